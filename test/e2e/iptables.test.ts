// Real packets through the iptables rules `kpx render` produces, loaded into network namespaces.
// Expectations follow kube-proxy's iptables proxier (pkg/proxy/iptables/proxier.go) and endpoint selection
// (pkg/proxy/topology.go CategorizeEndpoints), not kpx's output. Topology and addresses: cluster.ts.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Client, ConfigFile, Nodes, NodePort, Pods, Svc, startCluster, type Cluster } from './cluster.js';
import { distinctPods, expectOutcome, expectReplies, summarize } from './expect.js';

const HTTP = 80;
const DNS = 53;
/** Waiting time for cases where kube-proxy DROPs: TCP retransmits the SYN after 1 s, so 1.5 s is conclusive. */
const DropMs = 1500;

let started: Cluster | undefined;
function c(): Cluster {
  if (started === undefined) throw new Error('the e2e cluster did not start');
  return started;
}

describe('kpx render → iptables-restore → real packets (IPv4 + IPv6)', () => {
  before(async () => {
    started = await startCluster(ConfigFile.standard);
  });
  after(async () => {
    await started?.cleanup();
  });

  describe('ClusterIP', () => {
    it('TCP from a pod reaches both ready endpoints and nothing else, without masquerade', async () => {
      await expectReplies(
        c(),
        'p3a',
        { proto: 'tcp', host: Svc.web, port: HTTP, count: 24 },
        {
          node: 'n3',
          service: 'e2e/web',
          pods: ['p1a', 'p2a'],
          clientIP: Pods.p3a.ipv4,
        },
      );
    });

    it('a UDP service port works the same way', async () => {
      await expectReplies(
        c(),
        'p3a',
        { proto: 'udp', host: Svc.web, port: DNS, count: 16 },
        {
          node: 'n3',
          service: 'e2e/web',
          pods: ['p1a', 'p2a'],
          clientIP: Pods.p3a.ipv4,
        },
      );
    });

    it('a pod on a node with a local endpoint also reaches the remote one', async () => {
      await expectReplies(
        c(),
        'p1b',
        { proto: 'tcp', host: Svc.web, port: HTTP, count: 24 },
        {
          node: 'n1',
          service: 'e2e/web',
          pods: ['p1a', 'p2a'],
          clientIP: Pods.p1b.ipv4,
        },
      );
    });

    it('the node itself (host network) reaches the ClusterIP', async () => {
      await expectReplies(
        c(),
        'n3',
        { proto: 'tcp', host: Svc.web, port: HTTP, count: 8 },
        {
          node: 'n3',
          service: 'e2e/web',
          pods: ['p1a', 'p2a'],
          everyPod: false,
          clientIP: Nodes.n3.lanIPv4,
        },
      );
    });
  });

  describe('NodePort, externalTrafficPolicy Cluster', () => {
    for (const node of ['n1', 'n2', 'n3'] as const) {
      const note = node === 'n3' ? ' (no local endpoint)' : '';
      it(`external client → ${node}${note}: answered, source masqueraded to ${node}'s IP`, async () => {
        await expectReplies(
          c(),
          Client.name,
          { proto: 'tcp', host: Nodes[node].lanIPv4, port: NodePort.np, count: 16 },
          {
            node,
            service: 'e2e/np',
            pods: ['p1a', 'p2a'],
            clientIP: Nodes[node].lanIPv4,
          },
        );
      });
    }
  });

  describe('NodePort from the node itself', () => {
    it('127.0.0.1:<nodePort> works on IPv4 (localhostNodePorts, route_localnet), masqueraded', async () => {
      await expectReplies(
        c(),
        'n3',
        { proto: 'tcp', host: '127.0.0.1', port: NodePort.np, count: 8 },
        {
          node: 'n3',
          service: 'e2e/np',
          pods: ['p1a', 'p2a'],
          everyPod: false,
          clientIP: Nodes.n3.lanIPv4,
        },
      );
    });

    it('[::1]:<nodePort> is not served on IPv6', async () => {
      await expectOutcome(c(), 'n3', { proto: 'tcp', host: '::1', port: NodePort.web6, count: 2 }, 'refused', {
        node: 'n3',
        service: 'e2e/web6',
      });
    });

    it('eTP Local NodePort of its own IP without local endpoint: host traffic goes to all endpoints, masqueraded', async () => {
      await expectReplies(
        c(),
        'n3',
        { proto: 'tcp', host: Nodes.n3.lanIPv4, port: NodePort.local, count: 16 },
        {
          node: 'n3',
          service: 'e2e/local',
          pods: ['p1b', 'p2b'],
          clientIP: Nodes.n3.lanIPv4,
        },
      );
    });
  });

  describe('NodePort, externalTrafficPolicy Local', () => {
    it('external client → n1 (local endpoint p1b): only p1b answers and sees the client address', async () => {
      await expectReplies(
        c(),
        Client.name,
        { proto: 'tcp', host: Nodes.n1.lanIPv4, port: NodePort.local, count: 8 },
        {
          node: 'n1',
          service: 'e2e/local',
          pods: ['p1b'],
          clientIP: Client.ipv4,
        },
      );
    });

    it('external client → n2 (local endpoint p2b): only p2b answers and sees the client address', async () => {
      await expectReplies(
        c(),
        Client.name,
        { proto: 'tcp', host: Nodes.n2.lanIPv4, port: NodePort.local, count: 8 },
        {
          node: 'n2',
          service: 'e2e/local',
          pods: ['p2b'],
          clientIP: Client.ipv4,
        },
      );
    });

    it('external client → n3 (no local endpoint): dropped', async () => {
      await expectOutcome(
        c(),
        Client.name,
        { proto: 'tcp', host: Nodes.n3.lanIPv4, port: NodePort.local, timeoutMs: DropMs },
        'timeout',
        {
          node: 'n3',
          service: 'e2e/local',
        },
      );
    });

    it('pods using the ClusterIP reach every endpoint (internalTrafficPolicy Cluster)', async () => {
      await expectReplies(
        c(),
        'p3a',
        { proto: 'tcp', host: Svc.local, port: HTTP, count: 16 },
        {
          node: 'n3',
          service: 'e2e/local',
          pods: ['p1b', 'p2b'],
          clientIP: Pods.p3a.ipv4,
        },
      );
    });

    it('a pod using the NodePort of a node without local endpoint is short-circuited to all endpoints', async () => {
      await expectReplies(
        c(),
        'p3a',
        { proto: 'tcp', host: Nodes.n3.lanIPv4, port: NodePort.local, count: 16 },
        {
          node: 'n3',
          service: 'e2e/local',
          pods: ['p1b', 'p2b'],
          clientIP: Pods.p3a.ipv4,
        },
      );
    });
  });

  describe('internalTrafficPolicy Local', () => {
    it('a pod on a node without local endpoint (n2) is dropped', async () => {
      await expectOutcome(c(), 'p2a', { proto: 'tcp', host: Svc.itp, port: HTTP, timeoutMs: DropMs }, 'timeout', {
        node: 'n2',
        service: 'e2e/itp',
      });
    });

    it('a pod on n1 reaches only the n1 endpoint (p1c)', async () => {
      await expectReplies(
        c(),
        'p1a',
        { proto: 'tcp', host: Svc.itp, port: HTTP, count: 8 },
        {
          node: 'n1',
          service: 'e2e/itp',
          pods: ['p1c'],
          clientIP: Pods.p1a.ipv4,
        },
      );
    });

    it('a pod on n3 reaches only the n3 endpoint (p3b)', async () => {
      await expectReplies(
        c(),
        'p3a',
        { proto: 'tcp', host: Svc.itp, port: HTTP, count: 8 },
        {
          node: 'n3',
          service: 'e2e/itp',
          pods: ['p3b'],
          clientIP: Pods.p3a.ipv4,
        },
      );
    });
  });

  describe('LoadBalancer', () => {
    it('external client → ingress IP (routed via n1) reaches the endpoints, masqueraded', async () => {
      await expectReplies(
        c(),
        Client.name,
        { proto: 'tcp', host: Svc.lbIngress, port: HTTP, count: 16 },
        {
          node: 'n1',
          service: 'e2e/lb',
          pods: ['p2a', 'p3a'],
          clientIP: Nodes.n1.lanIPv4,
        },
      );
    });

    it('loadBalancerSourceRanges including the client let it through', async () => {
      await expectReplies(
        c(),
        Client.name,
        { proto: 'tcp', host: Svc.lbAllowIngress, port: HTTP, count: 4 },
        {
          node: 'n2',
          service: 'e2e/lb-allow',
          pods: ['p2b'],
          notClientIP: Client.ipv4,
        },
      );
    });

    it('loadBalancerSourceRanges excluding the client drop it', async () => {
      await expectOutcome(
        c(),
        Client.name,
        { proto: 'tcp', host: Svc.lbDenyIngress, port: HTTP, timeoutMs: DropMs },
        'timeout',
        {
          node: 'n1',
          service: 'e2e/lb-deny',
        },
      );
    });

    it('…and so is a pod, whose address is not in the source ranges either', async () => {
      await expectOutcome(
        c(),
        'p3a',
        { proto: 'tcp', host: Svc.lbDenyIngress, port: HTTP, timeoutMs: DropMs },
        'timeout',
        {
          node: 'n3',
          service: 'e2e/lb-deny',
        },
      );
    });

    it('…but its NodePort is not subject to the source ranges', async () => {
      await expectReplies(
        c(),
        Client.name,
        { proto: 'tcp', host: Nodes.n1.lanIPv4, port: NodePort.lbDeny, count: 2 },
        {
          node: 'n1',
          service: 'e2e/lb-deny',
          pods: ['p2b'],
        },
      );
    });

    it('an ingress IP with ipMode VIP is captured', async () => {
      await expectReplies(
        c(),
        Client.name,
        { proto: 'tcp', host: Svc.lbProxyVipIngress, port: HTTP, count: 2 },
        {
          node: 'n1',
          service: 'e2e/lb-proxy',
          pods: ['p2b'],
        },
      );
    });

    it('an ingress IP with ipMode Proxy gets no rules: it reaches what really holds that IP (n1 itself)', async () => {
      await expectReplies(
        c(),
        Client.name,
        { proto: 'tcp', host: Svc.lbProxyProxyIngress, port: HTTP, count: 2 },
        {
          node: 'n1',
          service: 'e2e/lb-proxy',
          pods: ['n1'],
          clientIP: Client.ipv4,
        },
      );
    });
  });

  describe('externalIPs', () => {
    it('external client → externalIP (routed via n2) reaches the endpoints, masqueraded', async () => {
      await expectReplies(
        c(),
        Client.name,
        { proto: 'tcp', host: Svc.extExternalIP, port: HTTP, count: 16 },
        {
          node: 'n2',
          service: 'e2e/ext',
          pods: ['p1a', 'p3a'],
          clientIP: Nodes.n2.lanIPv4,
        },
      );
    });

    it('a pod using the externalIP (eTP Cluster) reaches the endpoints, masqueraded', async () => {
      await expectReplies(
        c(),
        'p3b',
        { proto: 'tcp', host: Svc.extExternalIP, port: HTTP, count: 16 },
        {
          node: 'n3',
          service: 'e2e/ext',
          pods: ['p1a', 'p3a'],
          clientIP: Nodes.n3.lanIPv4,
        },
      );
    });
  });

  describe('sessionAffinity ClientIP', () => {
    for (const pod of ['p2b', 'p1b'] as const) {
      it(`12 connections from ${pod} all land on one endpoint`, async () => {
        await expectReplies(
          c(),
          pod,
          { proto: 'tcp', host: Svc.sticky, port: HTTP, count: 12 },
          {
            node: Pods[pod].node,
            service: 'e2e/sticky',
            pods: ['p1a', 'p2a', 'p3a'],
            everyPod: false,
            samePod: true,
            clientIP: Pods[pod].ipv4,
          },
        );
      });
    }

    it('while a service without affinity spreads the same client over its endpoints', async () => {
      const outcomes = await expectReplies(
        c(),
        'p2b',
        { proto: 'tcp', host: Svc.web, port: HTTP, count: 12 },
        {
          node: 'n2',
          service: 'e2e/web',
          pods: ['p1a', 'p2a'],
        },
      );
      assert.ok(distinctPods(outcomes).size >= 2, summarize(outcomes));
    });

    it('a long-lived connection stays on its endpoint', async () => {
      await expectReplies(
        c(),
        'p3b',
        { proto: 'tcp', host: Svc.web, port: HTTP, count: 3, messages: 20 },
        {
          node: 'n3',
          service: 'e2e/web',
          pods: ['p1a', 'p2a'],
          everyPod: false,
        },
      );
    });
  });

  describe('no usable endpoints → REJECT', () => {
    it('ClusterIP, TCP: refused', async () => {
      await expectOutcome(c(), 'p1a', { proto: 'tcp', host: Svc.empty, port: HTTP, count: 3 }, 'refused', {
        node: 'n1',
        service: 'e2e/empty',
      });
    });

    it('ClusterIP, UDP: ICMP port unreachable', async () => {
      await expectOutcome(c(), 'p1a', { proto: 'udp', host: Svc.empty, port: DNS, count: 3 }, 'refused', {
        node: 'n1',
        service: 'e2e/empty',
      });
    });

    it('NodePort, TCP, from the external client: refused (although a host process listens on it)', async () => {
      await expectOutcome(
        c(),
        Client.name,
        { proto: 'tcp', host: Nodes.n2.lanIPv4, port: NodePort.emptyTcp, count: 3 },
        'refused',
        {
          node: 'n2',
          service: 'e2e/empty',
        },
      );
    });

    it('NodePort, UDP, from the external client: ICMP port unreachable (although a host process listens)', async () => {
      await expectOutcome(
        c(),
        Client.name,
        { proto: 'udp', host: Nodes.n2.lanIPv4, port: NodePort.emptyUdp, count: 3 },
        'refused',
        {
          node: 'n2',
          service: 'e2e/empty',
        },
      );
    });

    it('an endpoint that is neither ready nor serving counts as none: refused', async () => {
      await expectOutcome(c(), 'p1a', { proto: 'tcp', host: Svc.unready, port: HTTP, count: 2 }, 'refused', {
        node: 'n1',
        service: 'e2e/unready',
      });
    });
  });

  describe('terminating endpoints', () => {
    it('eTP Local, only a serving+terminating local endpoint: NodePort on n1 still answers, client kept', async () => {
      await expectReplies(
        c(),
        Client.name,
        { proto: 'tcp', host: Nodes.n1.lanIPv4, port: NodePort.term, count: 4 },
        {
          node: 'n1',
          service: 'e2e/term',
          pods: ['p1c'],
          clientIP: Client.ipv4,
        },
      );
    });

    it('…and a node without any local endpoint (n2) drops', async () => {
      await expectOutcome(
        c(),
        Client.name,
        { proto: 'tcp', host: Nodes.n2.lanIPv4, port: NodePort.term, timeoutMs: DropMs },
        'timeout',
        {
          node: 'n2',
          service: 'e2e/term',
        },
      );
    });

    it('…and its ClusterIP falls back to the serving+terminating endpoint too (Cluster policy fallback)', async () => {
      await expectReplies(
        c(),
        'p3a',
        { proto: 'tcp', host: Svc.term, port: HTTP, count: 4 },
        {
          node: 'n3',
          service: 'e2e/term',
          pods: ['p1c'],
          clientIP: Pods.p3a.ipv4,
        },
      );
    });

    it('eTP Local with a ready endpoint elsewhere: n2 uses its local serving+terminating endpoint', async () => {
      await expectReplies(
        c(),
        Client.name,
        { proto: 'tcp', host: Nodes.n2.lanIPv4, port: NodePort.termMixed, count: 4 },
        {
          node: 'n2',
          service: 'e2e/term-mixed',
          pods: ['p2a'],
          clientIP: Client.ipv4,
        },
      );
    });

    it('…n1 uses its ready endpoint', async () => {
      await expectReplies(
        c(),
        Client.name,
        { proto: 'tcp', host: Nodes.n1.lanIPv4, port: NodePort.termMixed, count: 4 },
        {
          node: 'n1',
          service: 'e2e/term-mixed',
          pods: ['p1c'],
          clientIP: Client.ipv4,
        },
      );
    });

    it('…n3, whose local endpoint is terminating but not serving, drops', async () => {
      await expectOutcome(
        c(),
        Client.name,
        { proto: 'tcp', host: Nodes.n3.lanIPv4, port: NodePort.termMixed, timeoutMs: DropMs },
        'timeout',
        {
          node: 'n3',
          service: 'e2e/term-mixed',
        },
      );
    });

    it('…and ClusterIP traffic uses only the ready endpoint', async () => {
      await expectReplies(
        c(),
        'p3b',
        { proto: 'tcp', host: Svc.termMixed, port: HTTP, count: 10 },
        {
          node: 'n3',
          service: 'e2e/term-mixed',
          pods: ['p1c'],
        },
      );
    });
  });

  describe('topology (trafficDistribution PreferClose, zone hints)', () => {
    it('a pod in zone a reaches only the zone-a endpoints', async () => {
      await expectReplies(
        c(),
        'p1b',
        { proto: 'tcp', host: Svc.topo, port: HTTP, count: 16 },
        {
          node: 'n1',
          service: 'e2e/topo',
          pods: ['p1a', 'p2b'],
        },
      );
    });

    it('a pod in zone b reaches only the zone-b endpoint', async () => {
      await expectReplies(
        c(),
        'p3b',
        { proto: 'tcp', host: Svc.topo, port: HTTP, count: 8 },
        {
          node: 'n3',
          service: 'e2e/topo',
          pods: ['p3a'],
        },
      );
    });
  });

  describe('hairpin', () => {
    it("a pod connecting to its own service's ClusterIP lands on itself, masqueraded to its node's IP", async () => {
      await expectReplies(
        c(),
        'p2a',
        { proto: 'tcp', host: Svc.hairpin, port: HTTP, count: 3 },
        {
          node: 'n2',
          service: 'e2e/hairpin',
          pods: ['p2a'],
          notClientIP: Pods.p2a.ipv4,
          clientIP: Nodes.n2.lanIPv4,
        },
      );
    });
  });

  describe('IPv6', () => {
    it('ClusterIP of an IPv6 service from a pod reaches both endpoints, without masquerade', async () => {
      await expectReplies(
        c(),
        'p3a',
        { proto: 'tcp', host: Svc.web6, port: HTTP, count: 16 },
        {
          node: 'n3',
          service: 'e2e/web6',
          pods: ['p1a', 'p2a'],
          clientIP: Pods.p3a.ipv6,
        },
      );
    });

    it('NodePort of an IPv6 service from the external client, masqueraded', async () => {
      await expectReplies(
        c(),
        Client.name,
        { proto: 'tcp', host: Nodes.n3.lanIPv6, port: NodePort.web6, count: 16 },
        {
          node: 'n3',
          service: 'e2e/web6',
          pods: ['p1a', 'p2a'],
          clientIP: Nodes.n3.lanIPv6,
        },
      );
    });

    it('dual-stack service: the IPv4 ClusterIP reaches the IPv4 endpoints', async () => {
      await expectReplies(
        c(),
        'p2a',
        { proto: 'tcp', host: Svc.dualV4, port: HTTP, count: 16 },
        {
          node: 'n2',
          service: 'e2e/dual',
          pods: ['p1b', 'p3b'],
          clientIP: Pods.p2a.ipv4,
        },
      );
    });

    it('dual-stack service: the IPv6 ClusterIP reaches the IPv6 endpoints', async () => {
      await expectReplies(
        c(),
        'p2a',
        { proto: 'tcp', host: Svc.dualV6, port: HTTP, count: 16 },
        {
          node: 'n2',
          service: 'e2e/dual',
          pods: ['p1b', 'p3b'],
          clientIP: Pods.p2a.ipv6,
        },
      );
    });
  });
});
