// fast-check arbitraries of the objects kpx reads: valid ones (as the API server would admit them), and
// mutations of them (a field replaced by anything, hostile strings included).
import fc from 'fast-check';

export const hostileStrings = [
  '',
  ' ',
  'a b',
  'a\nb',
  '*filter\n-A INPUT -j DROP\nCOMMIT',
  'a"b',
  "a'b",
  'a\\b',
  '\u2028',
  'A',
  '-a',
  'a-',
  '1',
  '010.1.1.1',
  '::',
  'None',
  'é',
  'x'.repeat(300),
];

const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(...hostileStrings),
  fc.constantFrom(undefined, null, true, 0, -1, 65536, 1.5, Number.NaN, Infinity, [], {}, [1], { a: 1 }),
  fc.string({ maxLength: 10 }),
  fc.integer({ min: -100000, max: 100000 }),
  fc.jsonValue({ maxDepth: 2 }),
);

const label = fc.stringMatching(/^[a-z]([a-z0-9-]{0,6}[a-z0-9])?$/);
const octet = fc.integer({ min: 0, max: 255 });
const ipv4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join('.'));
const ipv6 = fc
  .tuple(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 1, max: 0xffff }))
  .map(([a, b]) => `fd00:${a.toString(16)}::${b.toString(16)}`);
const protocol = fc.constantFrom('TCP', 'UDP', 'SCTP', undefined);

export const nodeNames = ['n1', 'n2', 'n3'];

export const validNode = fc
  .record({ name: fc.constantFrom(...nodeNames), ip: ipv4, ip6: ipv6, zone: fc.constantFrom('z1', 'z2') })
  .map(({ name, ip, ip6, zone }) => ({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'topology.kubernetes.io/zone': zone } },
    spec: { podCIDRs: ['10.244.0.0/24'] },
    status: {
      addresses: [
        { type: 'InternalIP', address: ip },
        { type: 'InternalIP', address: ip6 },
      ],
    },
  }));

export const validService = fc
  .record({
    name: label,
    namespace: fc.constantFrom('default', 'shop', 'kube-system'),
    type: fc.constantFrom('ClusterIP', 'NodePort', 'LoadBalancer'),
    ip: ipv4,
    ip6: fc.option(ipv6, { nil: undefined }),
    ports: fc.uniqueArray(
      fc.record({
        name: label,
        port: fc.integer({ min: 1, max: 65535 }),
        protocol,
        nodePort: fc.integer({ min: 30000, max: 32767 }),
      }),
      {
        minLength: 1,
        maxLength: 3,
        selector: (p) => p.name,
      },
    ),
    etpLocal: fc.boolean(),
    affinity: fc.boolean(),
  })
  .map(({ name, namespace, type, ip, ip6, ports, etpLocal, affinity }) => ({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace, resourceVersion: '1' },
    spec: {
      type,
      clusterIPs: ip6 === undefined ? [ip] : [ip, ip6],
      ...(ip6 === undefined ? {} : { ipFamilyPolicy: 'PreferDualStack' }),
      ...(type !== 'ClusterIP' && etpLocal ? { externalTrafficPolicy: 'Local' } : {}),
      ...(affinity ? { sessionAffinity: 'ClientIP' } : {}),
      // Distinct port/protocol pairs (the API refuses duplicates): the port number is made unique by index.
      ports: ports.map((p, i) => ({
        name: p.name,
        port: ((p.port + i * 7919) % 65535) + 1,
        protocol: p.protocol,
        ...(type === 'ClusterIP' ? {} : { nodePort: 30000 + ((p.nodePort + i) % 2768) }),
      })),
    },
  }));

export const validSlice = fc
  .record({
    name: label,
    namespace: fc.constantFrom('default', 'shop', 'kube-system'),
    service: label,
    ports: fc.uniqueArray(fc.record({ name: label, port: fc.integer({ min: 1, max: 65535 }), protocol }), {
      minLength: 1,
      maxLength: 2,
      selector: (p) => `${p.name}`,
    }),
    endpoints: fc.array(
      fc.record({ ip: ipv4, node: fc.constantFrom(...nodeNames), ready: fc.boolean(), terminating: fc.boolean() }),
      { maxLength: 4 },
    ),
  })
  .map(({ name, namespace, service, ports, endpoints }) => ({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${service}-${name}`, namespace, labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    ports,
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      nodeName: e.node,
      conditions: { ready: e.ready, terminating: e.terminating },
    })),
  }));

export const validObject = fc.oneof(validService, validSlice, validNode);

/** Every path to a value inside `v` (object keys and array indexes). */
function paths(v: unknown, prefix: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  if (typeof v !== 'object' || v === null) return out;
  for (const [k, child] of Object.entries(v)) {
    const p = [...prefix, Array.isArray(v) ? Number(k) : k];
    out.push(p);
    paths(child, p, out);
  }
  return out;
}

/** `obj` with the value at one of its paths (or a new key somewhere) replaced by `value`. */
export function mutate(obj: unknown, pick: number, value: unknown, newKey: string | undefined): unknown {
  const copy = structuredClone(obj) as Record<string, unknown>;
  const all = paths(copy);
  const path = all[pick % all.length] ?? [];
  let parent: Record<string | number, unknown> = copy;
  for (const k of path.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
  const last = path[path.length - 1] ?? 'metadata';
  if (newKey !== undefined && typeof parent[last] === 'object' && parent[last] !== null && !Array.isArray(parent[last]))
    (parent[last] as Record<string, unknown>)[newKey] = value;
  else parent[last] = value;
  return copy;
}

export const mutatedObject = fc
  .tuple(
    validObject,
    fc.nat(),
    hostileValue,
    fc.option(fc.constantFrom('extra', 'name', 'port', '__proto__'), { nil: undefined }),
  )
  .map(([o, pick, value, key]) => mutate(o, pick, value, key));
