// An agent for agent.test.ts, started as `node agent-fixture.js serve`. Without that argument (as when a test
// runner loads every file of the folder) it does nothing.
import { serveAgent } from '../src/index.js';

if (process.argv[2] === 'serve') {
  let value = 0;
  const agent = serveAgent(
    {
      echo: (...args: never[]) => args,
      slow: async (ms: number, v: string) => {
        await new Promise((r) => setTimeout(r, ms));
        return v;
      },
      fail: (message: string) => Promise.reject(new Error(message)),
      nothing: () => undefined,
      set: (v: number) => {
        value = v;
        agent.emit('set', v);
      },
      get: () => value,
      die: () => process.exit(3),
    },
    {
      onClose: () => {
        process.stderr.write('closing\n');
      },
    },
  );
}
