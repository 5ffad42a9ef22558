// healthcheck.service objects: one per eTP Local LoadBalancer service and node, with kube-proxy's count of local
// endpoints (LocalReadyEndpoints: distinct IPs of ready endpoints on the node), never in the iptables output.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IPFamily, loadClusterState, parseManifests, type Endpoint, type ServiceObject } from '@kpx/model';
import {
  RuleKind,
  compileIpvs,
  defaultIptablesOptions,
  defaultIpvsOptions,
  healthCheckClaims,
  healthCheckObjects,
  healthCheckVariantKeyFn,
  mergeHealthCheckClaims,
  portVariantKeyFn,
  renderRestore,
  type HealthCheckServiceObject,
  type NodeRuleSet,
} from '../src/index.js';
import { TWO_NODES, compile, examplesState, stateFrom } from './helpers.js';
import { scaleCluster } from './scale-fixture.js';

const healthChecks = (rs: NodeRuleSet): HealthCheckServiceObject[] =>
  rs.objects.filter((o): o is HealthCheckServiceObject => o.kind === RuleKind.HealthCheckService);

const ep = (ip: string, nodeName: string, ready = true, port = 8080): Endpoint => ({
  ip,
  port,
  address: `${ip}:${port}`,
  nodeName,
  zone: '',
  ready,
  serving: ready,
  terminating: !ready,
  zoneHints: [],
  nodeHints: [],
});

/** kube-proxy's LocalReadyEndpoints: distinct IPs of ready endpoints on the node. */
const localReadyEndpoints = (nodeName: string, endpoints: readonly Endpoint[]): number =>
  nodeName === '' ? 0 : new Set(endpoints.filter((e) => e.ready && e.nodeName === nodeName).map((e) => e.ip)).size;

const LB = (extra = '', ports = '[{name: p80, port: 80, nodePort: 30080}]'): string =>
  `{type: LoadBalancer, clusterIP: 10.96.0.1, externalTrafficPolicy: Local, healthCheckNodePort: 32100${extra}, ports: ${ports}}`;

const manifests = (
  spec: string,
  endpoints: string,
  slicePorts = '[{name: p80, port: 8080, protocol: TCP}]',
): string => `${TWO_NODES}
---
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: ns1}
spec: ${spec}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: lb-1, namespace: ns1, labels: {kubernetes.io/service-name: lb}}
addressType: IPv4
ports: ${slicePorts}
endpoints: ${endpoints}
`;

test('the count: distinct IPs of ready endpoints on the node only, over the claims of every port', () => {
  const st = stateFrom(manifests(LB(), '[]'));
  const [svc] = st.servicePorts(IPFamily.IPv4);
  assert.ok(svc);
  const p80 = healthCheckClaims(svc, [
    ep('10.244.1.2', 'n1'),
    ep('10.244.1.3', 'n1'),
    ep('10.244.1.4', 'n1', false),
    ep('10.244.9.9', ''),
  ]);
  const p443 = healthCheckClaims(svc, [ep('10.244.1.2', 'n1', true, 8443), ep('10.244.2.2', 'n2')]);
  const claim = mergeHealthCheckClaims([...p80, ...p443]);
  const count = (node: string): number | undefined => healthCheckObjects(node, claim)[0]?.localEndpoints;
  assert.equal(count('n1'), 2, 'one IP on two ports counts once; not-ready (terminating) does not count');
  assert.equal(count('n2'), 1, 'a pod backing only the other port counts');
  assert.equal(count('n3'), 0);
  assert.equal(count(''), 0, "an endpoint without a node is nobody's");
  const key = healthCheckVariantKeyFn(claim);
  assert.ok(key);
  assert.deepEqual(
    ['n1', 'n2', 'n3', 'n4'].map((name) => key({ node: { name } })),
    ['n1', 'n2', '', ''],
    'nodes without ready endpoints share one object',
  );
  assert.equal(
    healthCheckVariantKeyFn(mergeHealthCheckClaims(healthCheckClaims(svc, []))),
    undefined,
    'no ready endpoint: the same object on every node',
  );
});

const TWO_ON_N1 =
  '[{addresses: [10.244.1.2], nodeName: n1}, {addresses: [10.244.1.3], nodeName: n1}, {addresses: [10.244.1.4], nodeName: n1, conditions: {ready: false, serving: true, terminating: true}}]';

test('an eTP Local LoadBalancer: one object per node with its local ready endpoints; 0 on a node without', () => {
  const st = stateFrom(manifests(LB(), TWO_ON_N1));
  const want = (n: number): HealthCheckServiceObject[] => [
    { kind: RuleKind.HealthCheckService, key: '32100', namespace: 'ns1', name: 'lb', port: 32100, localEndpoints: n },
  ];
  assert.deepEqual(healthChecks(compile(st, 'n1')), want(2));
  assert.deepEqual(healthChecks(compile(st, 'n2')), want(0));
});

test('a service with several ports has one health check object, counting each pod IP once', () => {
  const ports =
    '[{name: p80, port: 80, nodePort: 30080}, {name: p443, port: 443, nodePort: 30443}, {name: dns, port: 53, nodePort: 30053, protocol: UDP}]';
  const slicePorts =
    '[{name: p80, port: 8080, protocol: TCP}, {name: p443, port: 8443, protocol: TCP}, {name: dns, port: 5353, protocol: UDP}]';
  const st = stateFrom(manifests(LB('', ports), TWO_ON_N1, slicePorts));
  const hc = healthChecks(compile(st, 'n1'));
  assert.equal(hc.length, 1);
  assert.equal(hc[0]?.localEndpoints, 2);
  // Every port still gets kube-proxy's ACCEPT rule for the health check port (it writes one per service port).
  const accepts = renderRestore(compile(st, 'n1'))
    .split('\n')
    .filter((l) => l.includes('--dport 32100 -j ACCEPT'));
  assert.equal(accepts.length, 3);
});

test("the count is over every port of the service, as kube-proxy's: pods backing only another port count too", () => {
  const ports = '[{name: p80, port: 80, nodePort: 30080}, {name: p443, port: 443, nodePort: 30443}]';
  const text = `${manifests(LB('', ports), '[{addresses: [10.244.1.2], nodeName: n1}]')}---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: lb-2, namespace: ns1, labels: {kubernetes.io/service-name: lb}}
addressType: IPv4
ports: [{name: p443, port: 8443, protocol: TCP}]
endpoints: [{addresses: [10.244.1.2], nodeName: n1}, {addresses: [10.244.1.7], nodeName: n1}, {addresses: [10.244.2.7], nodeName: n2}]
`;
  const st = stateFrom(text);
  // p80 has one pod on n1; p443 has that one and another: 2 distinct IPs for the service.
  assert.equal(healthChecks(compile(st, 'n1'))[0]?.localEndpoints, 2);
  assert.equal(healthChecks(compile(st, 'n2'))[0]?.localEndpoints, 1, 'a node whose pods back only the other port');
  const ipvs = (node: string): number | undefined =>
    healthChecks(compileIpvs({ state: st, nodeName: node, options: defaultIpvsOptions(IPFamily.IPv4) }))[0]
      ?.localEndpoints;
  assert.deepEqual([ipvs('n1'), ipvs('n2')], [2, 1]);
});

test('no object for eTP Cluster, for NodePort eTP Local, nor without a healthCheckNodePort', () => {
  const cluster = stateFrom(
    manifests('{type: LoadBalancer, clusterIP: 10.96.0.1, ports: [{name: p80, port: 80, nodePort: 30080}]}', TWO_ON_N1),
  );
  assert.deepEqual(healthChecks(compile(cluster, 'n1')), []);
  const nodePort = stateFrom(
    manifests(
      '{type: NodePort, clusterIP: 10.96.0.1, externalTrafficPolicy: Local, healthCheckNodePort: 32100, ports: [{name: p80, port: 80, nodePort: 30080}]}',
      TWO_ON_N1,
    ),
  );
  assert.deepEqual(healthChecks(compile(nodePort, 'n1')), []);
  const { state } = loadClusterState([]);
  assert.deepEqual(state.servicePorts(IPFamily.IPv4), []);
});

test('healthcheck objects are not iptables: the restore text is the same without them', async () => {
  const st = await examplesState();
  for (const family of [IPFamily.IPv4, IPFamily.IPv6]) {
    const rs = compile(st, 'node-a', { family });
    const without = { ...rs, objects: rs.objects.filter((o) => o.kind !== RuleKind.HealthCheckService) };
    assert.equal(renderRestore(rs), renderRestore(without));
    assert.equal(renderRestore(rs, 'chains'), renderRestore(without, 'chains'));
  }
  // The example ingress (eTP Local LoadBalancer) has two pods on node-a and none on node-b.
  assert.deepEqual(
    healthChecks(compile(st, 'node-a')).map((o) => [o.key, o.name, o.localEndpoints]),
    [['32000', 'ingress', 2]],
  );
  assert.deepEqual(
    healthChecks(compile(st, 'node-b')).map((o) => [o.key, o.name, o.localEndpoints]),
    [['32000', 'ingress', 0]],
  );
});

test("the health check is the service's, not a port's: the port stays shared where no rule uses local endpoints", () => {
  // No node port and no load-balancer IP yet: nothing external reaches the port, so no rule depends on the node;
  // the health check count (a unit of the service) still does.
  const st = stateFrom(manifests(LB(', allocateLoadBalancerNodePorts: false', '[{name: p80, port: 80}]'), TWO_ON_N1));
  const [svc] = st.servicePorts(IPFamily.IPv4);
  assert.ok(svc);
  const eps = st.endpoints(svc);
  assert.equal(portVariantKeyFn(defaultIptablesOptions(IPFamily.IPv4), svc, eps), undefined);
  const claim = mergeHealthCheckClaims(healthCheckClaims(svc, eps));
  assert.deepEqual(
    ['n1', 'n2'].map((n) => healthCheckObjects(n, claim)[0]?.localEndpoints),
    [2, 0],
  );
  assert.deepEqual(
    ['n1', 'n2'].map((n) => healthChecks(compile(st, n))[0]?.localEndpoints),
    [2, 0],
  );
});

test('generated cluster: one object per eTP Local LoadBalancer service with a cluster IP of the family', () => {
  const { state } = loadClusterState(scaleCluster(60, 1).map((object, i) => ({ object, source: `gen#${i}` })));
  let counted = 0;
  for (const family of [IPFamily.IPv4, IPFamily.IPv6]) {
    const services = new Set(
      state
        .servicePorts(family)
        .filter((p) => p.healthCheckNodePort !== 0)
        .map((p) => `${p.service.namespace}/${p.service.name}`),
    );
    assert.ok(services.size > 0, `${family}: the fixture has eTP Local LoadBalancers`);
    for (const node of state.nodeNames()) {
      const hc = healthChecks(compile(state, node, { family }));
      assert.deepEqual(new Set(hc.map((o) => `${o.namespace}/${o.name}`)), services, `${family} ${node}`);
      assert.equal(new Set(hc.map((o) => o.key)).size, hc.length, 'keys are distinct');
      for (const o of hc) {
        const eps = state
          .servicePorts(family)
          .filter((p) => p.service.name === o.name && p.service.namespace === o.namespace)
          .flatMap((p) => state.endpoints(p));
        assert.equal(o.localEndpoints, localReadyEndpoints(node, eps));
        if (o.localEndpoints > 0) counted++;
      }
    }
  }
  assert.ok(counted > 3, `some nodes have local endpoints (${counted})`);
});

test('two services with one healthCheckNodePort: the first keeps it, the other an error and its other rules', () => {
  const svc = (name: string, ip: string, nodePort: number): string => `---
apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: ns1}
spec: {type: LoadBalancer, clusterIP: ${ip}, externalTrafficPolicy: Local, healthCheckNodePort: 32100, ports: [{name: p80, port: 80, nodePort: ${nodePort}}]}
`;
  const { state, diagnostics } = loadClusterState(
    parseManifests(TWO_NODES + svc('a', '10.96.0.1', 30001) + svc('b', '10.96.0.2', 30002), 'dup.yaml'),
  );
  const errors = diagnostics.filter((d) => d.severity === 'error');
  assert.equal(errors.length, 1);
  assert.deepEqual(
    [errors[0]?.object, errors[0]?.field],
    [{ kind: 'Service', namespace: 'ns1', name: 'b' }, 'spec.healthCheckNodePort'],
  );
  assert.match(errors[0]?.message ?? '', /32100 is already the health check node port of Service ns1\/a/);
  const rs = compile(state, 'n1');
  assert.deepEqual(
    healthChecks(rs).map((o) => o.name),
    ['a'],
    'one object per port: a node digest must never count an id twice',
  );
  assert.ok(
    renderRestore(rs).includes('"ns1/b:p80 has no endpoints" -m tcp -p tcp -d 10.96.0.2 --dport 80 -j REJECT'),
    'b keeps its rules',
  );
  // a lets the port go: b gets it the next time it is upserted.
  state.deleteService('ns1', 'a');
  assert.deepEqual(healthChecks(compile(state, 'n1')), []);
  const b = parseManifests(svc('b', '10.96.0.2', 30002), 'b.yaml')[0]!.object as ServiceObject;
  assert.deepEqual(
    state.upsertService(b).filter((d) => d.severity === 'error'),
    [],
  );
  assert.deepEqual(
    healthChecks(compile(state, 'n1')).map((o) => o.name),
    ['b'],
  );
});
