import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ToBeDeletedTaint, createHealthTracker, renderProbe } from '../src/index.js';

function clock(start = Date.parse('2025-01-01T00:00:00Z')) {
  let t = start;
  return { now: () => new Date(t), advance: (ms: number) => (t += ms) };
}

test('healthy while starting up; a queued update only turns unhealthy after the timeout; updated() heals', () => {
  const c = clock();
  const h = createHealthTracker({ healthTimeoutMs: 60_000, now: c.now });
  assert.equal(h.report().ok, true, 'nothing updated yet: starting up');
  h.updated('IPv4');
  const first = c.now();
  c.advance(1000);
  h.queuedUpdate('IPv4');
  c.advance(59_000);
  assert.equal(h.report().ok, true, 'queued 59 s: not late yet');
  h.queuedUpdate('IPv4'); // a later change does not reset the oldest pending one
  c.advance(1000);
  const late = h.report();
  assert.equal(late.ok, false, 'queued 60 s: late');
  assert.deepEqual(late.lastUpdated, first);
  h.updated('IPv4');
  assert.equal(h.report().ok, true);
  assert.deepEqual(h.report().lastUpdated, c.now());
});

test('one late family makes the proxy unhealthy; lastUpdated is the newest update otherwise', () => {
  const c = clock();
  const h = createHealthTracker({ healthTimeoutMs: 1000, now: c.now });
  h.updated('IPv4');
  c.advance(10);
  h.updated('IPv6');
  assert.deepEqual(h.report().lastUpdated, c.now());
  h.queuedUpdate('IPv6');
  c.advance(1000);
  assert.equal(h.report().ok, false);
  h.queuedUpdate('IPv4');
  h.updated('IPv6');
  assert.equal(h.report().ok, true, 'IPv4 queued only now');
});

test('node eligibility: deleted or tainted ToBeDeletedByClusterAutoscaler', () => {
  const h = createHealthTracker({ healthTimeoutMs: 1000 });
  assert.equal(h.nodeEligible, true);
  h.syncNode({ spec: { taints: [{ key: 'other' }, { key: ToBeDeletedTaint }] } });
  assert.equal(h.report().nodeEligible, false);
  h.syncNode({ metadata: {}, spec: { taints: [] } });
  assert.equal(h.nodeEligible, true);
  h.syncNode({ metadata: { deletionTimestamp: '2025-01-01T00:00:00Z' } });
  assert.equal(h.nodeEligible, false);
});

test('renderProbe: /healthz needs ok and an eligible node, /livez only ok; lastUpdated as kube-proxy reports it', () => {
  const now = new Date('2025-01-01T00:01:00.000Z');
  const last = new Date('2025-01-01T00:00:00.000Z');
  assert.deepEqual(renderProbe('healthz', { ok: true, lastUpdated: last }, now), {
    status: 200,
    body: { lastUpdated: now.toISOString(), currentTime: now.toISOString(), nodeEligible: true },
  });
  assert.deepEqual(renderProbe('healthz', { ok: false, lastUpdated: last }, now).body, {
    lastUpdated: last.toISOString(),
    currentTime: now.toISOString(),
    nodeEligible: true,
  });
  assert.equal(renderProbe('healthz', { ok: true, nodeEligible: false }, now).status, 503);
  assert.equal(renderProbe('livez', { ok: true, nodeEligible: false }, now).status, 200);
  assert.deepEqual(renderProbe('livez', { ok: false }, now), {
    status: 503,
    body: { lastUpdated: '0001-01-01T00:00:00.000Z', currentTime: now.toISOString() },
  });
  assert.deepEqual(renderProbe('healthz', { ok: true, details: { generation: 5 } }, now).body, {
    lastUpdated: now.toISOString(),
    currentTime: now.toISOString(),
    nodeEligible: true,
    details: { generation: 5 },
  });
});

test('a lost source of updates turns unhealthy after its grace period, and healthy again once restored', () => {
  const c = clock();
  const h = createHealthTracker({ healthTimeoutMs: 60_000, sourceGraceMs: 5_000, now: c.now });
  h.updated('IPv4');
  h.sourceLost();
  c.advance(4_999);
  assert.equal(h.report().ok, true, 'lost 4.999 s: within the grace');
  h.sourceLost(); // still lost: the grace runs from the first loss
  c.advance(1);
  assert.equal(h.report().ok, false, 'lost 5 s: stale');
  h.sourceRestored();
  assert.equal(h.report().ok, true);
  const defaults = createHealthTracker({ healthTimeoutMs: 1_000, now: c.now });
  defaults.sourceLost();
  c.advance(1_000);
  assert.equal(defaults.report().ok, false, 'the grace defaults to the health timeout');
});
