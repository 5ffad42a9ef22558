// The model's fast paths (JSON manifests, IPv4 canonical form, endpoint sorting and merging, the endpoints
// cache) must give exactly what the general code gives.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClusterState } from '../src/cluster.js';
import type { Endpoint } from '../src/endpoints.js';
import { ManifestError } from '../src/errors.js';
import { IPFamily, canonicalIP, cidrContains, parseCidr, type Cidr } from '../src/ip.js';
import { parseManifests } from '../src/manifests.js';
import { compareEndpoints, sortEndpoints } from '../src/topology.js';
import { ep, service, slice } from './fixtures.js';

/** The same text through the YAML parser: a trailing YAML comment makes it invalid JSON, nothing else. */
const viaYaml = (text: string): ReturnType<typeof parseManifests> => parseManifests(`${text}\n# yaml\n`, 'f.json');

test('JSON manifests: the JSON.parse path gives what the YAML parser gives', () => {
  const list = {
    apiVersion: 'v1',
    kind: 'List',
    items: [
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: {
          name: 'a:b',
          namespace: 'x',
          annotations: { 'x.io/url': 'http://h:1/p', q: 'say "hi": \\ \u00e9 😀' },
        },
        spec: { clusterIP: '10.96.0.1', ports: [{ port: 80 }] },
      },
      {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name: 'n1', labels: {} },
        status: { addresses: [{ type: 'InternalIP', address: 'fd00::1' }] },
      },
      'not an object',
      [1, 2],
    ],
  };
  const texts = [
    JSON.stringify(list),
    JSON.stringify(list, null, 2),
    JSON.stringify(list, null, '\t'),
    `\r\n ${JSON.stringify(list)}\r\n`,
    // (Not -0 nor 1e400: js-yaml reads an exponent without a dot as YAML 1.1 does, as a string, and -0 as 0.)
    '{"kind": "Service", "metadata": {"name": "p", "__proto__": {"polluted": 1}}, "n": [0, 1.5E-3, 12345678901234567890]}',
    '{"kind": "Service", "metadata": {"name": "esc\\u00e9\\/\\"x\\": \\\\"}, "spec": {"clusterIP": "::ffff:1.2.3.4"}}',
    '[{"kind": "Service"}]',
    '{}',
  ];
  for (const text of texts) assert.deepStrictEqual(parseManifests(text, 'f.json'), viaYaml(text), text.slice(0, 60));
  assert.equal(parseManifests(JSON.stringify(list), 'f.json')[1]?.source, 'f.json#items[1]');
});

test('JSON manifests with a key twice fail as they do through the YAML parser', () => {
  const dups = [
    '{"kind": "Service", "kind": "Node"}',
    '{"metadata": {"name": "y:z", "name": "x"}}',
    '{"metadata": {"name": "x", "name": "y:z"}, "a": "b"}',
    '{"a": {"b": 1}, "c": [{"d": 1, "d": 1}]}',
  ];
  for (const text of dups) {
    assert.throws(
      () => parseManifests(text, 'f.json'),
      (err: unknown) =>
        err instanceof ManifestError &&
        /duplicated mapping key/i.test(err.message) &&
        err.message.startsWith('f.json: '),
      text,
    );
    assert.throws(() => viaYaml(text), ManifestError);
  }
  // A colon written as an escape cannot be counted: such a text takes the YAML path, and still parses.
  const escaped = '{"kind": "Service", "metadata": {"name": "a\\u003ab"}}';
  assert.equal(parseManifests(escaped, 'f.json')[0]?.object.metadata?.name, 'a:b');
  assert.throws(() => parseManifests('{"metadata": {"name": "a\\u003Ab", "name": "c"}}', 'f.json'), ManifestError);
});

test('canonicalIP: a dotted quad is its own canonical form; other spellings are unchanged in outcome', () => {
  const octet = (i: number): number => (i * 37 + 11) % 256;
  for (let i = 0; i < 500; i++) {
    const ip = [octet(i), octet(i + 1), octet(i * 3), octet(i * 7)].join('.');
    assert.equal(canonicalIP(ip), ip);
    assert.equal(canonicalIP(` ${ip}\n`), ip);
  }
  // Leading zeros are decimal, as in kube-proxy's ParseIPSloppy.
  assert.equal(canonicalIP('010.1.1.1'), '10.1.1.1');
  assert.equal(canonicalIP('256.1.1.1'), undefined);
  assert.equal(canonicalIP('1.2.3'), undefined);
  assert.equal(canonicalIP('::ffff:10.1.2.3'), '10.1.2.3');
});

/** compareEndpoints as it was written before sort keys were cached: the zero-padded text of the address. */
function referenceCompare(a: Endpoint, b: Endpoint): number {
  const key = (ip: string): string => {
    if (!ip.includes(':'))
      return ip
        .split('.')
        .map((o) => o.padStart(3, '0'))
        .join('.');
    const [head = '', tail = ''] = ip.split('::');
    const h = head ? head.split(':') : [];
    const t = tail ? tail.split(':') : [];
    const words = ip.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
    return `~${words.map((w) => w.padStart(4, '0')).join(':')}`;
  };
  if (a.ip !== b.ip) {
    const x = key(a.ip);
    const y = key(b.ip);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  return a.port - b.port;
}

const endpoint = (ip: string, port: number): Endpoint => ({
  ip,
  nodeName: '',
  zone: '',
  ready: true,
  serving: true,
  terminating: false,
  zoneHints: [],
  nodeHints: [],
  port,
  address: ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`,
});

test('sortEndpoints and compareEndpoints order as the padded-text comparison did', () => {
  const ips = [
    '10.0.0.1',
    '10.0.0.10',
    '10.0.0.2',
    '9.255.255.255',
    '10.1.0.0',
    '0.0.0.0',
    '255.255.255.255',
    '192.168.1.1',
    'fd00::1',
    'fd00::a',
    '::1',
    '2001:db8::10:0',
    'fe80::1:2:3:4',
    '1.2.3',
    '01.2.3.4',
    '1.2.3.4.5',
  ];
  const all: Endpoint[] = [];
  ips.forEach((ip, i) => [80, 8080, 80 + i].forEach((port) => all.push(endpoint(ip, port))));
  // A fixed shuffle.
  const shuffled = all
    .map((e, i) => ({ e, k: (i * 7919) % all.length }))
    .sort((a, b) => a.k - b.k)
    .map((x) => x.e);
  assert.deepEqual(sortEndpoints([...shuffled]), [...shuffled].sort(referenceCompare));
  for (const a of all)
    for (const b of all)
      assert.equal(
        Math.sign(compareEndpoints(a, b)),
        Math.sign(referenceCompare(a, b)),
        `${a.address} vs ${b.address}`,
      );
});

test('endpoints: the same address twice in one slice or across slices, the later one wins; sorted by address', () => {
  const s = new ClusterState();
  s.upsertService(service('svc', { clusterIP: '10.96.0.1', ports: [{ name: 'p80', port: 80 }] }));
  s.upsertEndpointSlice(
    slice('svc-a', 'svc', [
      ep('10.244.1.9', 'n1', { ready: true }),
      ep('10.244.1.3', 'n2'),
      ep('10.244.1.9', 'n3', { ready: false }),
    ]),
  );
  const [port] = s.servicePorts(IPFamily.IPv4);
  assert.ok(port);
  assert.deepEqual(
    s.endpoints(port).map((e) => [e.address, e.nodeName, e.ready]),
    [
      ['10.244.1.3:80', 'n2', true],
      ['10.244.1.9:80', 'n3', false],
    ],
  );
  s.upsertEndpointSlice(slice('svc-b', 'svc', [ep('10.244.1.3', 'n4'), ep('10.244.1.10', 'n4')]));
  assert.deepEqual(
    s.endpoints(port).map((e) => [e.address, e.nodeName]),
    [
      ['10.244.1.3:80', 'n4'],
      ['10.244.1.9:80', 'n3'],
      ['10.244.1.10:80', 'n4'],
    ],
  );
});

test('endpoints: a cached answer for a port object follows every change of the slices and of the service', () => {
  const s = new ClusterState();
  s.upsertService(service('svc', { clusterIP: '10.96.0.1', ports: [{ name: 'p80', port: 80 }] }));
  const [port] = s.servicePorts(IPFamily.IPv4);
  assert.ok(port);
  assert.deepEqual(s.endpoints(port), []);
  s.upsertEndpointSlice(slice('svc-a', 'svc', [ep('10.244.1.2', 'n1')]));
  assert.deepEqual(
    s.endpoints(port).map((e) => e.address),
    ['10.244.1.2:80'],
  );
  assert.equal(s.endpoints(port), s.endpoints(port), 'cached');
  s.upsertEndpointSlice(slice('svc-a', 'svc', [ep('10.244.1.4', 'n1')]));
  assert.deepEqual(
    s.endpoints(port).map((e) => e.address),
    ['10.244.1.4:80'],
  );
  s.upsertEndpointSlice(slice('other', 'svc2', [ep('10.244.1.5', 'n1')]));
  assert.deepEqual(
    s.endpoints(port).map((e) => e.address),
    ['10.244.1.4:80'],
  );
  s.deleteEndpointSlice('ns1', 'svc-a');
  assert.deepEqual(s.endpoints(port), []);
  s.upsertEndpointSlice(slice('svc-c', 'svc', [ep('10.244.1.6', 'n1')]));
  // A port object of an older version of the service, and an equal object built elsewhere, get the same answer.
  s.upsertService(service('svc', { clusterIP: '10.96.0.1', ports: [{ name: 'p80', port: 80 }] }));
  const [fresh] = s.servicePorts(IPFamily.IPv4);
  assert.ok(fresh);
  assert.deepEqual(
    s.endpoints(port).map((e) => e.address),
    ['10.244.1.6:80'],
  );
  assert.deepEqual(
    s.endpoints({ ...fresh }).map((e) => e.address),
    ['10.244.1.6:80'],
  );
});

/** cidrContains for IPv4 as it was computed before: mask the address byte by byte, compare the text. */
function referenceContains(cidr: Cidr, ip: string): boolean {
  const c = canonicalIP(ip);
  if (c === undefined || c.includes(':') !== (cidr.family === IPFamily.IPv6)) return false;
  if (c.includes(':')) return cidrContains(cidr, ip);
  const masked = c
    .split('.')
    .map((o, i) => Number(o) & ((0xff << (8 - Math.max(0, Math.min(8, cidr.prefix - i * 8)))) & 0xff));
  return masked.join('.') === cidr.address;
}

test('cidrContains (IPv4) answers as the byte-wise comparison did, also for hand-made CIDRs', () => {
  const ips = [
    '10.0.0.1',
    '10.0.255.255',
    '10.1.0.0',
    '9.255.255.255',
    '0.0.0.0',
    '255.255.255.255',
    '172.16.0.12',
    '172.31.255.1',
    '192.168.1.200',
    ' 10.0.0.7',
    '010.0.0.1',
    'fd00::1',
    '::ffff:10.0.0.3',
    'x',
  ];
  const cidrs: Cidr[] = [
    '10.0.0.0/8',
    '10.0.0.0/16',
    '10.0.0.0/24',
    '10.0.0.1/32',
    '0.0.0.0/0',
    '172.16.0.0/12',
    '192.168.1.128/25',
    '10.0.0.7/31',
    'fd00::/8',
  ]
    .map((t) => parseCidr(t))
    .filter((c): c is Cidr => c !== undefined);
  cidrs.push(
    { family: IPFamily.IPv4, address: '10.0.0.5', prefix: 24, text: 'unmasked' },
    { family: IPFamily.IPv4, address: '010.0.0.0', prefix: 8, text: 'leading zero' },
    { family: IPFamily.IPv4, address: '10.0.0.0', prefix: 40, text: 'prefix > 32' },
    { family: IPFamily.IPv4, address: '0.0.0.0', prefix: -1, text: 'negative prefix' },
  );
  for (const cidr of cidrs)
    for (const ip of ips)
      assert.equal(
        cidrContains(cidr, ip),
        referenceContains(cidr, ip),
        `${cidr.text} ${cidr.address}/${cidr.prefix} contains ${JSON.stringify(ip)}`,
      );
  for (let i = 0; i < 2000; i++) {
    const ip = [(i * 37) % 256, (i * 11) % 256, (i * 101) % 256, i % 256].join('.');
    const cidr = parseCidr(`${[(i * 37) % 256, (i * 13) % 256, 0, 0].join('.')}/${i % 33}`);
    assert.ok(cidr);
    assert.equal(cidrContains(cidr, ip), referenceContains(cidr, ip), `${cidr.text} ${ip}`);
  }
});

test('servicePorts: the remembered order follows every Service change; callers get their own array', () => {
  const s = new ClusterState();
  s.upsertService(service('b', { clusterIP: '10.96.0.2', ports: [{ name: 'p', port: 80 }] }));
  s.upsertService(
    service('a', {
      clusterIP: '10.96.0.1',
      ports: [
        { name: 'p', port: 80 },
        { name: 'q', port: 81, protocol: 'UDP' },
      ],
    }),
  );
  const names = (): string[] => s.servicePorts(IPFamily.IPv4).map((p) => `${p.name}/${p.protocol}`);
  assert.deepEqual(names(), ['ns1/a:p/TCP', 'ns1/a:q/UDP', 'ns1/b:p/TCP']);
  s.servicePorts(IPFamily.IPv4).reverse().pop();
  assert.deepEqual(names(), ['ns1/a:p/TCP', 'ns1/a:q/UDP', 'ns1/b:p/TCP']);
  s.upsertService(service('a', { clusterIP: '10.96.0.1', ports: [{ name: 'r', port: 82 }] }));
  assert.deepEqual(names(), ['ns1/a:r/TCP', 'ns1/b:p/TCP']);
  s.deleteService('ns1', 'b');
  assert.deepEqual(names(), ['ns1/a:r/TCP']);
  assert.deepEqual(s.servicePorts(IPFamily.IPv6), []);
});
