// Deterministic synthetic cluster for benchmarks: N nodes, S services × E endpoints, in realistic proportions.
// Same options (and seed) -> byte-identical objects. No Math.random.
//
//   node bench/synth.mjs --out DIR [--services 10000] [--endpoints 10] [--nodes 100] [--seed kpx] [--chunks 8]
//
// writes DIR/manifests/*.json (`kind: List`, for `kpx render --manifests DIR/manifests`) and
// DIR/kube-proxy.json (a KubeProxyConfiguration with the cluster CIDR, for `--config`).
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

export const DEFAULTS = Object.freeze({ services: 10_000, endpoints: 10, nodes: 100, seed: 'kpx', chunks: 8 });

/** Address plan (no two ranges overlap). */
export const CLUSTER_CIDR = '10.128.0.0/9'; // pods: one /20 per node (4,094 pods), up to 2,048 nodes
const POD_PREFIX = 20;
const SERVICE_CIDR_BASE = ip4('10.96.0.0'); // service cluster IPs, 10.96.0.0/12
const NODE_IP_BASE = ip4('172.16.0.0'); // node InternalIPs, 172.16.0.0/12
const LB_IP_BASE = ip4('100.64.0.0'); // load balancer ingress IPs, 100.64.0.0/10
const EXTERNAL_IP_BASE = ip4('198.18.0.0'); // spec.externalIPs, 198.18.0.0/15
const NODE_PORT_MIN = 30000;
const NODE_PORT_MAX = 32767;
const ZONES = ['zone-a', 'zone-b', 'zone-c'];
const MAX_ENDPOINTS_PER_SLICE = 100; // the EndpointSlice controller's default

/**
 * The mix. Service classes are exclusive (they sum to 1); the rest are independent draws.
 * eTP Local services are NodePort (2%) or LoadBalancer (1%) ones on top of the eTP Cluster 12% / 5%.
 */
export const MIX = Object.freeze({
  clusterIP: 0.8,
  nodePort: 0.12,
  loadBalancer: 0.05,
  nodePortLocal: 0.02,
  loadBalancerLocal: 0.01,
  internalLocal: 0.02,
  clientIPAffinity: 0.05,
  multiPort: 0.05,
  /** Of the multi-port services: DNS-like, 53/UDP + 53/TCP. */
  multiPortDns: 0.2,
  /** Single-port services that are UDP. */
  udp: 0.03,
  noEndpoints: 0.02,
  /** ClusterIP services with one spec.externalIPs address. */
  externalIP: 0.01,
  /** Load balancers with loadBalancerSourceRanges. */
  sourceRanges: 0.3,
  /** Of those, ones whose ranges include the node network (the rule letting a node reach its own LB). */
  sourceRangesWithNodes: 0.33,
  /** Endpoints that are terminating (two thirds of them still serving). */
  terminating: 0.03,
  /** Single-port services with an unnamed port. */
  unnamedPort: 0.4,
});

const COMMON_PORTS = [80, 443, 8080, 8443, 9090, 5432, 6379, 3306, 9000, 11211, 27017, 5672];

function ip4(text) {
  return text.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

function ip4Text(n) {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** mulberry32 seeded from a string (FNV-1a): a small, fast, deterministic PRNG. */
export function makeRng(seed) {
  let h = 0x811c9dc5;
  for (const ch of String(seed)) h = Math.imul(h ^ ch.codePointAt(0), 0x01000193) >>> 0;
  let a = h;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    chance: (p) => next() < p,
    int: (n) => Math.floor(next() * n),
    pick: (xs) => xs[Math.floor(next() * xs.length)],
    /** 5 lowercase alphanumerics, like the suffix of a generated name. */
    suffix: () => Array.from({ length: 5 }, () => 'bcdfghjklmnpqrstvwxz2456789'[Math.floor(next() * 27)]).join(''),
  };
}

const pad = (i, n) => String(i).padStart(Math.max(3, String(n - 1).length), '0');

export function nodeName(i, n) {
  return `node-${pad(i, n)}`;
}

function makeNodes(n) {
  if (n < 1 || n > 2 ** (POD_PREFIX - 9)) throw new RangeError(`nodes must be 1..${2 ** (POD_PREFIX - 9)}, not ${n}`);
  const base = ip4(CLUSTER_CIDR.split('/')[0]);
  return Array.from({ length: n }, (_, i) => {
    const name = nodeName(i, n);
    const podBase = base + i * 2 ** (32 - POD_PREFIX);
    const podCIDR = `${ip4Text(podBase)}/${POD_PREFIX}`;
    return {
      object: {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: {
          name,
          labels: { 'kubernetes.io/hostname': name, 'topology.kubernetes.io/zone': ZONES[i % ZONES.length] },
        },
        spec: { podCIDR, podCIDRs: [podCIDR] },
        status: {
          addresses: [
            { type: 'InternalIP', address: ip4Text(NODE_IP_BASE + 10 + i) },
            { type: 'Hostname', address: name },
          ],
        },
      },
      name,
      zone: ZONES[i % ZONES.length],
      podBase,
      nextPod: 1,
    };
  });
}

/** Sequential NodePort allocation; past the range it wraps (duplicates are counted in the stats). */
function nodePortAllocator(stats) {
  let next = NODE_PORT_MIN;
  return () => {
    if (next > NODE_PORT_MAX) {
      next = NODE_PORT_MIN;
      stats.nodePortsWrapped = true;
    }
    stats.nodePorts++;
    return next++;
  };
}

function servicePorts(rng, { multi, dns, udp, unnamed }) {
  if (dns) {
    return [
      { name: 'dns', port: 53, targetPort: 53, protocol: 'UDP' },
      { name: 'dns-tcp', port: 53, targetPort: 53, protocol: 'TCP' },
    ];
  }
  const port = udp ? 5000 + rng.int(1000) : rng.pick(COMMON_PORTS);
  const protocol = udp ? 'UDP' : 'TCP';
  if (multi) {
    return [
      { name: 'http', port, targetPort: port + 10000, protocol },
      { name: 'metrics', port: 9100, targetPort: 9100, protocol },
    ];
  }
  return [{ name: unnamed ? '' : udp ? 'udp' : 'http', port, targetPort: port < 1024 ? port + 8000 : port, protocol }];
}

/**
 * Builds the cluster. Returns the Kubernetes objects (nodes, services, slices, in that order) and stats
 * counting what was actually produced.
 */
export function synthCluster(options = {}) {
  const o = { ...DEFAULTS, ...options };
  const rng = makeRng(`${o.seed}/${o.services}/${o.endpoints}/${o.nodes}`);
  const stats = {
    nodes: o.nodes,
    services: 0,
    servicePorts: 0,
    clusterIP: 0,
    nodePort: 0,
    loadBalancer: 0,
    externalLocal: 0,
    internalLocal: 0,
    clientIPAffinity: 0,
    multiPort: 0,
    udpPorts: 0,
    noEndpoints: 0,
    externalIPs: 0,
    sourceRanges: 0,
    endpoints: 0,
    terminating: 0,
    slices: 0,
    nodePorts: 0,
    nodePortsWrapped: false,
  };
  const nodes = makeNodes(o.nodes);
  const allocNodePort = nodePortAllocator(stats);
  const services = [];
  const slices = [];
  let lbCount = 0;
  for (let j = 0; j < o.services; j++) {
    const namespace = `ns-${pad(j % 64, 64)}`;
    const name = `svc-${pad(j, o.services)}`;
    const r = rng.next();
    let type = 'ClusterIP';
    let etpLocal = false;
    if (r < MIX.clusterIP) type = 'ClusterIP';
    else if (r < MIX.clusterIP + MIX.nodePort) type = 'NodePort';
    else if (r < MIX.clusterIP + MIX.nodePort + MIX.loadBalancer) type = 'LoadBalancer';
    else if (r < MIX.clusterIP + MIX.nodePort + MIX.loadBalancer + MIX.nodePortLocal)
      [type, etpLocal] = ['NodePort', true];
    else [type, etpLocal] = ['LoadBalancer', true];
    const itpLocal = rng.chance(MIX.internalLocal);
    const affinity = rng.chance(MIX.clientIPAffinity);
    const multi = rng.chance(MIX.multiPort);
    const dns = multi && rng.chance(MIX.multiPortDns);
    const udp = !multi && rng.chance(MIX.udp);
    const unnamed = !multi && rng.chance(MIX.unnamedPort);
    const noEndpoints = rng.chance(MIX.noEndpoints);
    const externalIP = type === 'ClusterIP' && rng.chance(MIX.externalIP);

    const ports = servicePorts(rng, { multi, dns, udp, unnamed });
    const spec = {
      type,
      clusterIP: ip4Text(SERVICE_CIDR_BASE + 10 + j),
      clusterIPs: [ip4Text(SERVICE_CIDR_BASE + 10 + j)],
      ipFamilies: ['IPv4'],
      ipFamilyPolicy: 'SingleStack',
      ports: ports.map((p) => ({
        ...(p.name ? { name: p.name } : {}),
        protocol: p.protocol,
        port: p.port,
        targetPort: p.targetPort,
        ...(type !== 'ClusterIP' ? { nodePort: allocNodePort() } : {}),
      })),
      sessionAffinity: affinity ? 'ClientIP' : 'None',
      ...(affinity ? { sessionAffinityConfig: { clientIP: { timeoutSeconds: rng.chance(0.5) ? 10800 : 600 } } } : {}),
      internalTrafficPolicy: itpLocal ? 'Local' : 'Cluster',
    };
    const status = {};
    if (type !== 'ClusterIP') {
      spec.externalTrafficPolicy = etpLocal ? 'Local' : 'Cluster';
      if (etpLocal) spec.healthCheckNodePort = allocNodePort();
    }
    if (type === 'LoadBalancer') {
      status.loadBalancer = { ingress: [{ ip: ip4Text(LB_IP_BASE + 1 + lbCount++), ipMode: 'VIP' }] };
      if (rng.chance(MIX.sourceRanges)) {
        spec.loadBalancerSourceRanges = rng.chance(MIX.sourceRangesWithNodes)
          ? ['203.0.113.0/24', '172.16.0.0/12']
          : ['203.0.113.0/24', '198.51.100.0/24'];
        stats.sourceRanges++;
      }
    }
    if (externalIP) {
      spec.externalIPs = [ip4Text(EXTERNAL_IP_BASE + 1 + stats.externalIPs)];
      stats.externalIPs++;
    }
    services.push({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace, resourceVersion: String(j + 1) },
      spec,
      status,
    });

    stats.services++;
    stats.servicePorts += ports.length;
    stats.udpPorts += ports.filter((p) => p.protocol === 'UDP').length;
    if (type === 'ClusterIP') stats.clusterIP++;
    else if (type === 'NodePort') stats.nodePort++;
    else stats.loadBalancer++;
    if (etpLocal) stats.externalLocal++;
    if (itpLocal) stats.internalLocal++;
    if (affinity) stats.clientIPAffinity++;
    if (multi) stats.multiPort++;
    if (noEndpoints) {
      stats.noEndpoints++;
      continue;
    }

    const endpoints = [];
    for (let k = 0; k < o.endpoints; k++) {
      const node = nodes[rng.int(nodes.length)];
      if (node.nextPod >= 2 ** (32 - POD_PREFIX) - 1)
        throw new RangeError(`node ${node.name} ran out of pod IPs: use more nodes or fewer endpoints`);
      const terminating = rng.chance(MIX.terminating);
      const serving = !terminating || rng.chance(2 / 3);
      endpoints.push({
        addresses: [ip4Text(node.podBase + node.nextPod++)],
        conditions: { ready: !terminating, serving, terminating },
        nodeName: node.name,
        zone: node.zone,
        targetRef: { kind: 'Pod', namespace, name: `${name}-${rng.suffix()}` },
      });
      stats.endpoints++;
      if (terminating) stats.terminating++;
    }
    const slicePorts = ports.map((p) => ({
      ...(p.name ? { name: p.name } : { name: '' }),
      protocol: p.protocol,
      port: p.targetPort,
    }));
    for (let s = 0; s < endpoints.length; s += MAX_ENDPOINTS_PER_SLICE) {
      slices.push({
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: {
          name: `${name}-${rng.suffix()}`,
          namespace,
          labels: {
            'kubernetes.io/service-name': name,
            'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io',
          },
        },
        addressType: 'IPv4',
        ports: slicePorts,
        endpoints: endpoints.slice(s, s + MAX_ENDPOINTS_PER_SLICE),
      });
      stats.slices++;
    }
  }
  return { nodes: nodes.map((n) => n.object), services, slices, stats, options: o, clusterCIDR: CLUSTER_CIDR };
}

/** Every object in manifest order: nodes, then each service followed by its slices. */
export function manifestObjects(cluster) {
  const slicesByService = new Map();
  for (const s of cluster.slices) {
    const key = `${s.metadata.namespace}/${s.metadata.labels['kubernetes.io/service-name']}`;
    if (!slicesByService.has(key)) slicesByService.set(key, []);
    slicesByService.get(key).push(s);
  }
  const out = [...cluster.nodes];
  for (const svc of cluster.services)
    out.push(svc, ...(slicesByService.get(`${svc.metadata.namespace}/${svc.metadata.name}`) ?? []));
  return out;
}

/** The KubeProxyConfiguration the benchmark uses (defaults plus the cluster CIDR, for local-traffic detection). */
export function kubeProxyConfig(cluster) {
  return {
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    mode: 'iptables',
    clusterCIDR: cluster.clusterCIDR,
  };
}

/**
 * Writes DIR/manifests/NN-cluster.json (`chunks` files of `kind: List` JSON, nodes first) and DIR/kube-proxy.json.
 * Replaces any *.json already in DIR/manifests. Returns the paths and the manifests' total size in bytes.
 */
export async function writeCluster(cluster, dir, { chunks = DEFAULTS.chunks } = {}) {
  const manifests = join(dir, 'manifests');
  await mkdir(manifests, { recursive: true });
  for (const f of await readdir(manifests)) if (f.endsWith('.json')) await rm(join(manifests, f));
  const objects = manifestObjects(cluster);
  const size = Math.ceil(objects.length / chunks);
  const files = [];
  let bytes = 0;
  for (let i = 0; i * size < objects.length; i++) {
    const path = join(manifests, `${String(i).padStart(2, '0')}-cluster.json`);
    const text = `${JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects.slice(i * size, (i + 1) * size) })}\n`;
    await writeFile(path, text);
    files.push(path);
    bytes += Buffer.byteLength(text);
  }
  const config = join(dir, 'kube-proxy.json');
  await writeFile(config, `${JSON.stringify(kubeProxyConfig(cluster), null, 2)}\n`);
  return { manifests, files, config, bytes };
}

async function cli() {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      services: { type: 'string', default: String(DEFAULTS.services) },
      endpoints: { type: 'string', default: String(DEFAULTS.endpoints) },
      nodes: { type: 'string', default: String(DEFAULTS.nodes) },
      seed: { type: 'string', default: DEFAULTS.seed },
      chunks: { type: 'string', default: String(DEFAULTS.chunks) },
    },
  });
  if (!values.out) {
    process.stderr.write(
      'usage: node bench/synth.mjs --out DIR [--services N] [--endpoints N] [--nodes N] [--seed S] [--chunks N]\n',
    );
    return 2;
  }
  const cluster = synthCluster({
    services: Number(values.services),
    endpoints: Number(values.endpoints),
    nodes: Number(values.nodes),
    seed: values.seed,
  });
  const { manifests, files, config, bytes } = await writeCluster(cluster, resolve(values.out), {
    chunks: Number(values.chunks),
  });
  process.stdout.write(
    `${JSON.stringify({ manifests, files: files.length, bytes, config, stats: cluster.stats }, null, 2)}\n`,
  );
  return 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) process.exitCode = await cli();

/**
 * The slice of a plain ClusterIP service (no affinity, internal traffic policy Cluster, more than one endpoint):
 * a change of it touches that service's own rules only.
 */
export function plainClusterIPSlice(cluster) {
  return cluster.slices.find((s) => {
    const svc = cluster.services.find(
      (x) =>
        x.metadata.name === s.metadata.labels['kubernetes.io/service-name'] &&
        x.metadata.namespace === s.metadata.namespace,
    );
    return (
      svc?.spec.type === 'ClusterIP' &&
      (svc.spec.sessionAffinity ?? 'None') === 'None' &&
      (svc.spec.internalTrafficPolicy ?? 'Cluster') === 'Cluster' &&
      s.endpoints.length > 1
    );
  });
}

/** A one-endpoint change of a slice, the k-th of a series: its first endpoint moves to another pod address. */
export function flipEndpoint(slice, k) {
  const copy = structuredClone(slice);
  const ep = copy.endpoints[0];
  const parts = ep.addresses[0].split('.');
  parts[3] = String(((Number(parts[3]) + 1 + k) % 250) + 2);
  ep.addresses = [parts.join('.')];
  copy.metadata.resourceVersion = String(1000 + k);
  return copy;
}
