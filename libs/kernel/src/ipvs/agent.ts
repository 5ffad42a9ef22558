// The IPVS agent: started by NetnsIpvsKernel as `ip netns exec NAME node agent.js`, so its netlink sockets live in
// that network namespace. Reads one JSON request per line on stdin ({ id, method, args }), answers one line per
// request on stdout ({ id, result } or { id, error }), and exits when stdin closes.
import { createInterface } from 'node:readline';
import { LocalIpvsKernel, toWireError } from './kernel.js';

const kernel = new LocalIpvsKernel();

const methods: Record<string, (...args: never[]) => Promise<unknown>> = {
  listServices: () => kernel.listServices(),
  listDestinations: (service: never) => kernel.listDestinations(service),
  apply: async (ops: never) => (await kernel.apply(ops)).map(toWireError),
  ensureDummy: (name: never) => kernel.ensureDummy(name),
  linkAddresses: async (name: never) => (await kernel.linkAddresses(name)) ?? null,
  changeAddresses: async (name: never, op: never, addresses: never) => (await kernel.changeAddresses(name, op, addresses)).map(toWireError),
  deleteLink: (name: never) => kernel.deleteLink(name),
  flush: () => kernel.flush(),
};

const reply = (msg: object): void => {
  process.stdout.write(`${JSON.stringify(msg)}\n`);
};

createInterface({ input: process.stdin })
  .on('line', (line) => {
    let id = 0;
    try {
      const req = JSON.parse(line) as { id: number; method: string; args: never[] };
      id = req.id;
      const fn = methods[req.method];
      if (!fn) throw new Error(`unknown method ${req.method}`);
      fn(...req.args).then(
        (result) => reply({ id, result: result ?? null }),
        (err: unknown) => reply({ id, error: toWireError(err) }),
      );
    } catch (err) {
      reply({ id, error: toWireError(err) });
    }
  })
  .on('close', () => {
    void kernel.close().then(() => process.exit(0));
  });
