// The version `kpx --version` prints: the @kpx/cli package's, read from its package.json next to dist/.
import { readFileSync } from 'node:fs';

let cached: string | undefined;

export function kpxVersion(): string {
  cached ??=
    (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string })
      .version ?? 'unknown';
  return cached;
}
