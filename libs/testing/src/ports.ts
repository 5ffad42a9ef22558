// Free ports for servers a test starts (bound to port 0, read, released).
import { createServer } from 'node:net';

/** A TCP port free on `host` now (default 127.0.0.1): bound, then released. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, host, resolve);
  });
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}
