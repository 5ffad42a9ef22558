// iptables.masqueradeAll: kube-proxy marks every packet to a ClusterIP for masquerade (the rule at the top of the
// KUBE-SVC chain matches the ClusterIP without the cluster-CIDR exception), so pods see the node's address.
// Traffic entering through external destinations is not affected beyond the usual rules: eTP Local NodePorts still
// keep the client address. Same topology and manifests as iptables.test.ts, rendered with the second config.
import { after, before, describe, it } from 'node:test';
import { Client, ConfigFile, Nodes, NodePort, Pods, Svc, startCluster, type Cluster } from './cluster.js';
import { expectReplies } from './expect.js';

const HTTP = 80;
const DNS = 53;

let started: Cluster | undefined;
function c(): Cluster {
  if (started === undefined) throw new Error('the e2e cluster did not start');
  return started;
}

describe('kpx render with masqueradeAll → real packets', () => {
  before(async () => {
    started = await startCluster(ConfigFile.masqueradeAll);
  });
  after(async () => {
    await started?.cleanup();
  });

  it('ClusterIP traffic from a pod on n3 is masqueraded to n3', async () => {
    await expectReplies(
      c(),
      'p3a',
      { proto: 'tcp', host: Svc.web, port: HTTP, count: 16 },
      {
        node: 'n3',
        service: 'e2e/web',
        pods: ['p1a', 'p2a'],
        notClientIP: Pods.p3a.ipv4,
        clientIP: Nodes.n3.lanIPv4,
      },
    );
  });

  it('ClusterIP traffic from a pod on n1 is masqueraded to n1 (also towards the local endpoint)', async () => {
    await expectReplies(
      c(),
      'p1b',
      { proto: 'tcp', host: Svc.web, port: HTTP, count: 16 },
      {
        node: 'n1',
        service: 'e2e/web',
        pods: ['p1a', 'p2a'],
        clientIP: Nodes.n1.lanIPv4,
      },
    );
  });

  it('UDP ClusterIP traffic is masqueraded too', async () => {
    await expectReplies(
      c(),
      'p3a',
      { proto: 'udp', host: Svc.web, port: DNS, count: 8 },
      {
        node: 'n3',
        service: 'e2e/web',
        pods: ['p1a', 'p2a'],
        everyPod: false,
        clientIP: Nodes.n3.lanIPv4,
      },
    );
  });

  it('IPv6 ClusterIP traffic is masqueraded to the node IPv6 address', async () => {
    await expectReplies(
      c(),
      'p3a',
      { proto: 'tcp', host: Svc.web6, port: HTTP, count: 8 },
      {
        node: 'n3',
        service: 'e2e/web6',
        pods: ['p1a', 'p2a'],
        everyPod: false,
        clientIP: Nodes.n3.lanIPv6,
      },
    );
  });

  it('an eTP Local NodePort still keeps the external client address', async () => {
    await expectReplies(
      c(),
      Client.name,
      { proto: 'tcp', host: Nodes.n1.lanIPv4, port: NodePort.local, count: 4 },
      {
        node: 'n1',
        service: 'e2e/local',
        pods: ['p1b'],
        clientIP: Client.ipv4,
      },
    );
  });
});
