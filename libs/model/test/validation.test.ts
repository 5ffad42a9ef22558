// Validation as the API server does it (issue #13): each invalid object is rejected with a diagnostic naming
// the object and the field; a valid object beside it is unaffected.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClusterState } from '../src/cluster.js';
import { formatDiagnostic } from '../src/diagnostics.js';
import { convertEndpointSlice } from '../src/endpoints.js';
import { IPFamily } from '../src/ip.js';
import { convertNode } from '../src/node.js';
import { convertService } from '../src/service.js';
import type { ServiceObject } from '../src/k8s.js';
import {
  checkDNS1035Label,
  checkDNS1123Label,
  checkDNS1123Subdomain,
  checkIANAServiceName,
  checkLabelValue,
} from '../src/validation.js';
import { ep, node, service, slice } from './fixtures.js';

const spec = { clusterIP: '10.96.0.1', ports: [{ name: 'http', port: 80 }] };

function errors(obj: ServiceObject): [string, string][] {
  const r = convertService(obj);
  assert.deepEqual(r.ports, [], 'an invalid service has no ports');
  return r.diagnostics.filter((d) => d.severity === 'error').map((d) => [d.field, d.message]);
}

test('name checks: DNS-1035, DNS-1123 label and subdomain, IANA service names, label values', () => {
  for (const ok of ['a', 'web', 'a-1', 'x'.repeat(63)]) assert.equal(checkDNS1035Label(ok), undefined, ok);
  for (const bad of ['', '1a', 'A', 'a_b', 'a-', 'a.b', 'x'.repeat(64), 'a\nb', 'a"b', 'a b', 12345, { a: 1 }])
    assert.notEqual(checkDNS1035Label(bad), undefined, JSON.stringify(bad));
  assert.equal(checkDNS1123Label('1a'), undefined);
  assert.notEqual(checkDNS1123Label('a.b'), undefined);
  assert.equal(checkDNS1123Subdomain('node-1.zone.example'), undefined);
  assert.notEqual(checkDNS1123Subdomain('node_1'), undefined);
  for (const ok of ['http', 'h2c', 'web-8080']) assert.equal(checkIANAServiceName(ok), undefined, ok);
  for (const bad of ['', '8080', 'a--b', '-a', 'a-', 'HTTP', 'a'.repeat(16)])
    assert.notEqual(checkIANAServiceName(bad), undefined, bad);
  for (const ok of ['', 'a', 'A.b_c-1']) assert.equal(checkLabelValue(ok), undefined, ok);
  for (const bad of ['-a', 'a b', 'x'.repeat(64), 1]) assert.notEqual(checkLabelValue(bad), undefined, String(bad));
});

test('a Service name or port name with a newline, a quote or a space is rejected, naming the field', () => {
  for (const name of ['web\n*filter\n-A INPUT -j DROP\nCOMMIT', 'we"b', 'we b', '12345']) {
    const e = errors(service(name, spec));
    assert.deepEqual(
      e.map(([f]) => f),
      ['metadata.name'],
      name,
    );
  }
  assert.deepEqual(
    errors(service({ a: 1 } as unknown as string, spec)).map(([f]) => f),
    ['metadata.name'],
  );
  for (const portName of ['ht\ntp', 'ht"tp', 'ht tp', 'HTTP']) {
    assert.deepEqual(
      errors(service('web', { clusterIP: '10.96.0.1', ports: [{ name: portName, port: 80 }] })).map(([f]) => f),
      ['spec.ports[0].name'],
      portName,
    );
  }
  const d = convertService(service('web\nCOMMIT', spec)).diagnostics[0]!;
  assert.doesNotMatch(formatDiagnostic(d), /\n/, 'the diagnostic itself stays on one line');
  assert.equal(d.object.name, '"web\\nCOMMIT"');
  assert.deepEqual(
    errors(service('web', spec, { metadata: { name: 'web', namespace: 'Bad_NS' } })).map(([f]) => f),
    ['metadata.namespace'],
  );
});

test('silent nonsense is now a diagnostic', () => {
  const cases: [string, ServiceObject, string][] = [
    [
      'IPv6 cluster IP, ipFamilies IPv4',
      service('a', { clusterIP: 'fd00::1', ipFamilies: ['IPv4'], ports: [{ port: 80 }] }),
      'spec.clusterIP',
    ],
    [
      'spec is a string',
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'a' }, spec: 'hello' } as unknown as ServiceObject,
      'spec',
    ],
    [
      'targetPort -5',
      service('a', { clusterIP: '10.96.0.1', ports: [{ port: 80, targetPort: -5 }] }),
      'spec.ports[0].targetPort',
    ],
    [
      'targetPort 999999',
      service('a', { clusterIP: '10.96.0.1', ports: [{ port: 80, targetPort: 999999 }] }),
      'spec.ports[0].targetPort',
    ],
    [
      'targetPort a bad name',
      service('a', { clusterIP: '10.96.0.1', ports: [{ port: 80, targetPort: 'Web_Port' }] }),
      'spec.ports[0].targetPort',
    ],
    [
      'ipFamilies unknown',
      service('a', { clusterIP: '10.96.0.1', ipFamilies: ['IPv5'], ports: [{ port: 80 }] }),
      'spec.ipFamilies[0]',
    ],
    [
      'SingleStack with two IPs',
      service('a', {
        clusterIPs: ['10.96.0.1', 'fd00::1'],
        ipFamilyPolicy: 'SingleStack',
        ports: [{ port: 80 }],
      } as ServiceObject['spec'] & object),
      'spec.ipFamilyPolicy',
    ],
    [
      'nodePort on ClusterIP',
      service('a', { clusterIP: '10.96.0.1', ports: [{ port: 80, nodePort: 30000 }] }),
      'spec.ports[0].nodePort',
    ],
    [
      'nodePort 70000',
      service('a', { type: 'NodePort', clusterIP: '10.96.0.1', ports: [{ port: 80, nodePort: 70000 }] }),
      'spec.ports[0].nodePort',
    ],
    [
      'nodePort twice in one service',
      service('a', {
        type: 'NodePort',
        clusterIP: '10.96.0.1',
        ports: [
          { name: 'a', port: 80, nodePort: 30000 },
          { name: 'b', port: 81, nodePort: 30000 },
        ],
      }),
      'spec.ports[1].nodePort',
    ],
    [
      'protocol',
      service('a', { clusterIP: '10.96.0.1', ports: [{ port: 80, protocol: 'ICMP' }] }),
      'spec.ports[0].protocol',
    ],
    ['label value', service('a', spec, { metadata: { name: 'a', labels: { app: 'a b' } } }), 'metadata.labels["app"]'],
  ];
  for (const [what, obj, field] of cases)
    assert.deepEqual(
      errors(obj).map(([f]) => f),
      [field],
      what,
    );
  // Named targetPorts and the port itself are fine.
  assert.equal(
    convertService(service('a', { clusterIP: '10.96.0.1', ports: [{ port: 80, targetPort: 'http' }] })).ports.length,
    1,
  );
});

test('IPv4 with leading zeros: accepted as kube-proxy reads it (decimal), canonical, with a warning', () => {
  const r = convertService(service('a', { clusterIP: '172.30.0.041', ports: [{ port: 80 }] }));
  assert.equal(r.ports[0]?.clusterIP, '172.30.0.41');
  assert.deepEqual(
    r.diagnostics.map((d) => [d.severity, d.field]),
    [['warning', 'spec.clusterIP']],
  );
  assert.match(r.diagnostics[0]!.message, /leading zeros.*172\.30\.0\.41/);
  const s = convertEndpointSlice(slice('s', 'a', [ep('10.244.001.010', 'n1')]));
  assert.equal(s.slice?.ports[0]?.endpoints[0]?.ip, '10.244.1.10');
  assert.equal(convertNode(node('n1', '010.0.0.1', 'z', '10.244.0.0/24')).node?.addresses[0]?.ip, '10.0.0.1');
});

test('EndpointSlices: names, addresses against addressType, port names, node names', () => {
  const bad = (s: ReturnType<typeof slice>): string[] => {
    const r = convertEndpointSlice(s);
    assert.equal(r.slice, undefined);
    return r.diagnostics.filter((d) => d.severity === 'error').map((d) => d.field);
  };
  assert.deepEqual(bad(slice('S_1', 'a', [ep('10.0.0.1', 'n1')])), ['metadata.name']);
  assert.deepEqual(bad(slice('s', 'a', [{ addresses: ['10.0.0.1', 'fd00::1'] }])), ['endpoints[0].addresses[1]']);
  assert.deepEqual(bad(slice('s', 'a', [ep('10.0.0.1', 'n1')], { ports: [{ name: 'a"b', port: 80 }] })), [
    'ports[0].name',
  ]);
  assert.deepEqual(bad(slice('s', 'a', [ep('10.0.0.1', 'n 1')])), ['endpoints[0].nodeName']);
  // Not a label value, and not a Service's name either.
  assert.deepEqual(bad(slice('s', 'a\nb', [ep('10.0.0.1', 'n1')])), [
    'metadata.labels["kubernetes.io/service-name"]',
    'metadata.labels["kubernetes.io/service-name"]',
  ]);
  assert.deepEqual(bad(slice('s', 'a', [ep('10.0.0.1', 'n1')], { ports: [{ name: 'p', port: 0 }] })), [
    'ports[0].port',
  ]);
});

test('Nodes: names are DNS-1123 subdomains', () => {
  assert.deepEqual(
    convertNode(node('Node_1', '10.0.0.1', 'z', '10.244.0.0/24')).diagnostics.map((d) => d.field),
    ['metadata.name'],
  );
  assert.equal(convertNode(node('node-1.example', '10.0.0.1', 'z', '10.244.0.0/24')).node?.name, 'node-1.example');
});

test('two services on one clusterIP:port:protocol, one nodePort twice: the first by namespace/name wins, in any order', () => {
  const a = service('a', { type: 'NodePort', clusterIP: '10.96.0.1', ports: [{ port: 80, nodePort: 30080 }] });
  const b = service('b', { type: 'NodePort', clusterIP: '10.96.0.1', ports: [{ port: 80, nodePort: 30081 }] });
  const c = service('c', { type: 'NodePort', clusterIP: '10.96.0.3', ports: [{ port: 80, nodePort: 30080 }] });
  const summary = (st: ClusterState): string[] =>
    st.servicePorts(IPFamily.IPv4).map((p) => `${p.name} ${p.clusterIP}:${p.port} ${p.nodePort}`);
  const want = ['ns1/a 10.96.0.1:80 30080', 'ns1/c 10.96.0.3:80 0'];
  for (const order of [
    [a, b, c],
    [c, b, a],
    [b, c, a],
  ]) {
    const st = new ClusterState();
    for (const s of order) st.upsertService(s);
    assert.deepEqual(summary(st), want);
    assert.deepEqual(
      st.diagnostics().map((d) => [d.object.name, d.field]),
      [
        ['b', 'spec.ports[0].port'],
        ['c', 'spec.ports[0].nodePort'],
      ],
    );
  }
  // The holder goes: the next one gets the port, and is reported as affected (a controller recompiles it).
  const st = new ClusterState();
  for (const s of [a, b, c]) st.upsertService(s);
  st.takeAffectedServices();
  st.deleteService('ns1', 'a');
  assert.deepEqual(st.takeAffectedServices(), ['ns1/b', 'ns1/c']);
  assert.deepEqual(summary(st), ['ns1/b 10.96.0.1:80 30081', 'ns1/c 10.96.0.3:80 30080']);
  assert.deepEqual(st.diagnostics(), []);
  // A different protocol on the same IP and port is no conflict.
  const udp = service('d', { clusterIP: '10.96.0.1', ports: [{ port: 80, protocol: 'UDP' }] });
  st.upsertService(udp);
  assert.deepEqual(st.diagnostics(), []);
});
