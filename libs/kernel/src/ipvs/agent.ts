// The IPVS agent: started by NetnsIpvsKernel (an AgentProcess of @kpx/common) as `ip netns exec NAME node agent.js`,
// so its netlink sockets live in that network namespace. Serves the IpvsKernel methods; exits when stdin closes.
import { serveAgent } from '@kpx/common';
import { LocalIpvsKernel, toWireError } from './kernel.js';

const kernel = new LocalIpvsKernel();

serveAgent(
  {
    listServices: () => kernel.listServices(),
    listDestinations: (service: never) => kernel.listDestinations(service),
    apply: async (ops: never) => (await kernel.apply(ops)).map(toWireError),
    ensureDummy: (name: never) => kernel.ensureDummy(name),
    linkAddresses: async (name: never) => (await kernel.linkAddresses(name)) ?? null,
    changeAddresses: async (name: never, op: never, addresses: never) =>
      (await kernel.changeAddresses(name, op, addresses)).map(toWireError),
    deleteLink: (name: never) => kernel.deleteLink(name),
    flush: () => kernel.flush(),
  },
  { encodeError: toWireError, onClose: () => kernel.close() },
);
