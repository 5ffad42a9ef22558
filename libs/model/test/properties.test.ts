// Properties of the model's input handling (issue #13), with fast-check: a fixed seed in `npm test`, more runs
// with KPX_PROPERTY_RUNS (see property-runs.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ClusterState } from '../src/cluster.js';
import { KubeProxyConfigError } from '../src/config/errors.js';
import { loadKubeProxyConfig } from '../src/config/index.js';
import { formatDiagnostic, type Diagnostic } from '../src/diagnostics.js';
import { IPFamily } from '../src/ip.js';
import { checkObject, loadClusterState, parseManifestText } from '../src/manifests.js';
import type { KubeObject } from '../src/k8s.js';
import { hostileStrings, mutatedObject, validObject } from './arbitraries.js';
import { propertyParams } from './property-runs.js';

function checkDiagnostic(d: Diagnostic): void {
  const text = formatDiagnostic(d);
  assert.doesNotMatch(text, /[\n\r\u2028\u2029]/, text);
  assert.ok(d.object.kind !== '' && d.object.name !== '', text);
  assert.doesNotMatch(text, /\[object Object\]/, text);
  // A rejection names its field (an object that is not an object at all is the one exception).
  if (d.severity === 'error')
    assert.ok(d.field !== '' || d.object.kind === 'File' || /must be an object/.test(d.message), text);
}

test('valid objects are accepted with no error', () => {
  fc.assert(
    fc.property(validObject, (o) => {
      const r = checkObject(o, 'f.yaml');
      assert.ok(r.ok, r.diagnostics.map(formatDiagnostic).join('\n'));
    }),
    propertyParams,
  );
});

test('random and mutated Services, EndpointSlices and Nodes never throw; every rejection names the object and the field', () => {
  fc.assert(
    fc.property(fc.array(mutatedObject, { maxLength: 8 }), (objects) => {
      const state = new ClusterState();
      for (const o of objects) {
        const r = checkObject(o, 'f.yaml');
        r.diagnostics.forEach(checkDiagnostic);
        if (r.kind !== undefined && !r.ok) assert.ok(r.diagnostics.some((d) => d.severity === 'error'));
        const obj = o as KubeObject;
        if (r.kind === 'Service') state.upsertService(obj, { source: 'f.yaml' }).forEach(checkDiagnostic);
        else if (r.kind === 'EndpointSlice')
          state.upsertEndpointSlice(obj, { source: 'f.yaml' }).forEach(checkDiagnostic);
        else if (r.kind === 'Node') state.upsertNode(obj, { source: 'f.yaml' }).forEach(checkDiagnostic);
      }
      state.diagnostics().forEach(checkDiagnostic);
      // What the state holds is usable: ports and endpoints read back without throwing.
      for (const f of [IPFamily.IPv4, IPFamily.IPv6]) for (const p of state.servicePorts(f)) state.endpoints(p);
    }),
    propertyParams,
  );
});

test('manifest text of any shape never throws and names the file', () => {
  const text = fc.oneof(
    fc.string({ maxLength: 200 }),
    fc
      .array(
        fc.oneof(
          fc.constantFrom(
            '---',
            'a:',
            '  - b',
            'c: &x [*x]',
            '<<: *x',
            '{',
            '[',
            '"',
            "'",
            'k: |',
            '  x',
            '\t',
            ...hostileStrings,
          ),
        ),
        { maxLength: 12 },
      )
      .map((l) => l.join('\n')),
    fc.array(validObject, { maxLength: 3 }).map((os) => os.map((o) => JSON.stringify(o)).join('\n---\n')),
  );
  fc.assert(
    fc.property(text, (t) => {
      const r = parseManifestText(t, 'dir/f.yaml');
      for (const d of r.diagnostics) {
        assert.ok(d.source?.startsWith('dir/f.yaml'), formatDiagnostic(d));
        checkDiagnostic(d);
      }
      loadClusterState(r.objects).diagnostics.forEach(checkDiagnostic);
    }),
    propertyParams,
  );
});

test('random KubeProxyConfigurations: a config is loaded or refused with KubeProxyConfigError, never another error', () => {
  const value = fc.jsonValue({ maxDepth: 3 });
  const config = fc.record({
    apiVersion: fc.constantFrom('kubeproxy.config.k8s.io/v1alpha1', 'v1', undefined),
    kind: fc.constantFrom('KubeProxyConfiguration', 'Other', undefined),
    mode: fc.oneof(fc.constantFrom('iptables', 'ipvs', 'nftables', ''), value),
    clusterCIDR: fc.oneof(fc.constantFrom('10.0.0.0/8', '10.0.0.0/8,fd00::/64', 'x'), value),
    iptables: fc.oneof(
      fc.record({ masqueradeBit: fc.oneof(fc.integer({ min: -5, max: 40 }), value), localhostNodePorts: value }),
      value,
    ),
    ipvs: fc.oneof(fc.record({ scheduler: fc.oneof(fc.constantFrom('rr', 'lc', 'mh', 'evil\nx'), value) }), value),
    nodePortAddresses: fc.oneof(fc.array(fc.constantFrom('10.0.0.0/8', 'primary', 'x', '')), value),
    extra: value,
  });
  fc.assert(
    fc.property(config, (c) => {
      try {
        loadKubeProxyConfig(JSON.stringify(c));
      } catch (err) {
        assert.ok(err instanceof KubeProxyConfigError, String(err));
      }
    }),
    propertyParams,
  );
});
