import assert from 'node:assert/strict';
import { test } from 'node:test';
import { convertService, usesClusterEndpoints, usesLocalEndpoints } from '../src/service.js';
import { service } from './fixtures.js';

const fields = (r: ReturnType<typeof convertService>): string[] =>
  r.diagnostics.filter((d) => d.severity === 'error').map((d) => d.field);

test('dual-stack NodePort service gives one port per family', () => {
  const r = convertService(
    service('web', {
      type: 'NodePort',
      clusterIPs: ['10.96.0.1', 'FD00::1'],
      ports: [{ name: 'http', port: 80, nodePort: 30080 }],
      externalIPs: ['192.0.2.1', 'fd00::99'],
    }),
  );
  assert.deepEqual(r.diagnostics, []);
  assert.equal(r.ports.length, 2);
  const [v4, v6] = r.ports;
  assert.equal(v4?.name, 'ns1/web:http');
  assert.equal(v4?.protocol, 'TCP');
  assert.deepEqual(v4?.externalIPs, ['192.0.2.1']);
  assert.equal(v6?.clusterIP, 'fd00::1');
  assert.deepEqual(v6?.externalIPs, ['fd00::99']);
  assert.equal(v6?.nodePort, 30080);
});

test('headless and ExternalName services produce no rules on purpose', () => {
  assert.match(convertService(service('h', { clusterIP: 'None', ports: [{ port: 1 }] })).skipped ?? '', /headless/);
  assert.match(
    convertService(service('x', { type: 'ExternalName', externalName: 'a.example' })).skipped ?? '',
    /ExternalName/,
  );
});

test('invalid fields are reported by path and the service is skipped', () => {
  const cases: [NonNullable<Parameters<typeof service>[1]>, string][] = [
    [{ clusterIP: '10.96.0.300', ports: [{ port: 80 }] }, 'spec.clusterIP'],
    [{ clusterIP: '10.96.0.1', ports: [{ port: 70000 }] }, 'spec.ports[0].port'],
    [{ clusterIP: '10.96.0.1', ports: [{ port: 80, protocol: 'ICMP' }] }, 'spec.ports[0].protocol'],
    [{ clusterIP: '10.96.0.1', ports: [{ name: 'a', port: 80 }, { port: 81 }] }, 'spec.ports[1].name'],
    [
      {
        clusterIP: '10.96.0.1',
        ports: [
          { name: 'a', port: 80 },
          { name: 'a', port: 81 },
        ],
      },
      'spec.ports[1].name',
    ],
    [{ clusterIP: '10.96.0.1', externalIPs: ['nope'], ports: [{ port: 80 }] }, 'spec.externalIPs[0]'],
    [
      { clusterIP: '10.96.0.1', loadBalancerSourceRanges: ['10.0.0.0/40'], ports: [{ port: 80 }] },
      'spec.loadBalancerSourceRanges[0]',
    ],
    [{ clusterIP: '10.96.0.1', externalTrafficPolicy: 'Nearby', ports: [{ port: 80 }] }, 'spec.externalTrafficPolicy'],
    [{ clusterIP: '10.96.0.1', sessionAffinity: 'Cookie', ports: [{ port: 80 }] }, 'spec.sessionAffinity'],
    [
      {
        clusterIP: '10.96.0.1',
        sessionAffinity: 'ClientIP',
        sessionAffinityConfig: { clientIP: { timeoutSeconds: 0 } },
        ports: [{ port: 80 }],
      },
      'spec.sessionAffinityConfig.clientIP.timeoutSeconds',
    ],
    [{ type: 'Magic', clusterIP: '10.96.0.1', ports: [{ port: 80 }] }, 'spec.type'],
    [{ clusterIP: '10.96.0.1', ports: [] }, 'spec.ports'],
    [{ clusterIP: '10.96.0.1', clusterIPs: ['10.96.0.2'], ports: [{ port: 80 }] }, 'spec.clusterIPs[0]'],
  ];
  for (const [spec, field] of cases) {
    const r = convertService(service('bad', spec));
    assert.deepEqual(r.ports, [], field);
    assert.ok(fields(r).includes(field), `${field} not in ${JSON.stringify(r.diagnostics)}`);
    assert.equal(r.diagnostics[0]?.object.namespace, 'ns1');
    assert.equal(r.diagnostics[0]?.object.name, 'bad');
  }
});

test('load balancer ingress: VIP mode kept, Proxy mode excluded, other family filtered', () => {
  const r = convertService(
    service(
      'lb',
      { type: 'LoadBalancer', clusterIP: '10.96.0.1', ports: [{ port: 80, nodePort: 30000 }] },
      {
        status: {
          loadBalancer: {
            ingress: [
              { ip: '192.0.2.1' },
              { ip: '192.0.2.2', ipMode: 'Proxy' },
              { ip: 'fd00::5' },
              { hostname: 'lb.example' },
            ],
          },
        },
      },
    ),
  );
  assert.deepEqual(r.ports[0]?.loadBalancerVIPs, ['192.0.2.1']);
});

test('traffic policies: eTP only for NodePort/LoadBalancer; uses*Endpoints like kube-proxy', () => {
  const [clusterIPLocal] = convertService(
    service('a', {
      clusterIP: '10.96.0.1',
      externalTrafficPolicy: 'Local',
      externalIPs: ['192.0.2.1'],
      ports: [{ port: 80 }],
    }),
  ).ports;
  assert.equal(clusterIPLocal?.externalPolicyLocal, false);
  const [np] = convertService(
    service('b', {
      type: 'NodePort',
      clusterIP: '10.96.0.1',
      externalTrafficPolicy: 'Local',
      ports: [{ port: 80, nodePort: 30001 }],
    }),
  ).ports;
  assert.ok(np && np.externalPolicyLocal && usesClusterEndpoints(np) && usesLocalEndpoints(np));
  const [itp] = convertService(
    service('c', { clusterIP: '10.96.0.1', internalTrafficPolicy: 'Local', ports: [{ port: 80 }] }),
  ).ports;
  assert.ok(itp && !usesClusterEndpoints(itp) && usesLocalEndpoints(itp));
});

test('ClientIP affinity defaults to 10800 s; health check node port only for LB + eTP Local', () => {
  const [a] = convertService(
    service('a', { clusterIP: '10.96.0.1', sessionAffinity: 'ClientIP', ports: [{ port: 80 }] }),
  ).ports;
  assert.equal(a?.affinityTimeoutSeconds, 10800);
  const [lb] = convertService(
    service('lb', {
      type: 'LoadBalancer',
      clusterIP: '10.96.0.1',
      externalTrafficPolicy: 'Local',
      healthCheckNodePort: 32000,
      ports: [{ port: 80, nodePort: 30000 }],
    }),
  ).ports;
  assert.equal(lb?.healthCheckNodePort, 32000);
  const [np] = convertService(
    service('np', {
      type: 'NodePort',
      clusterIP: '10.96.0.1',
      externalTrafficPolicy: 'Local',
      healthCheckNodePort: 32000,
      ports: [{ port: 80, nodePort: 30000 }],
    }),
  ).ports;
  assert.equal(np?.healthCheckNodePort, 0);
});
