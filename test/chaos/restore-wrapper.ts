// A failing iptables-restore for one executor: a directory put first in that executor's PATH, holding
// `iptables-restore` and `ip6tables-restore` scripts. While the counter file holds N > 0, a run with --noflush
// (the executor's applies and full restores; not the scratch-namespace canonicalization, which has no
// --noflush) decrements it and fails; every other run execs the real binary. libs/kernel runs the tools by name
// through `sh -c … exec "$@"` and `ip netns exec`, which both search PATH, so the wrapper is what runs.
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const Tools = ['iptables-restore', 'ip6tables-restore'] as const;

function which(tool: string): string {
  return execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim();
}

function script(real: string, counter: string, lock: string, log: string): string {
  return `#!/bin/sh
# kpx chaos: fail while ${counter} holds a positive number (runs with --noflush only), else run ${real}.
case " $* " in
  *" --noflush "*)
    fail=$(flock ${JSON.stringify(lock)} sh -c 'n=$(cat ${JSON.stringify(counter)} 2>/dev/null || echo 0); if [ "$n" -gt 0 ] 2>/dev/null; then echo $((n - 1)) > ${JSON.stringify(counter)}; echo yes; fi')
    if [ "$fail" = yes ]; then
      cat >/dev/null
      echo "$(date +%s.%N) injected failure: $0 $*" >> ${JSON.stringify(log)}
      echo "iptables-restore: line 1 failed (kpx chaos: injected failure)" >&2
      exit 1
    fi
    ;;
esac
exec ${JSON.stringify(real)} "$@"
`;
}

export class RestoreWrapper {
  private armed = 0;
  /** Failures armed over the run, and how many of them the executor ran into. */
  totalArmed = 0;
  totalInjected = 0;

  private constructor(readonly dir: string) {}

  static async create(dir: string): Promise<RestoreWrapper> {
    const w = new RestoreWrapper(dir);
    await mkdir(dir, { recursive: true });
    for (const tool of Tools) {
      const file = join(dir, tool);
      await writeFile(file, script(which(tool), w.counter, join(dir, 'lock'), w.log));
      await chmod(file, 0o755);
    }
    await writeFile(w.counter, '0\n');
    return w;
  }

  private get counter(): string {
    return join(this.dir, 'fail-count');
  }

  private get log(): string {
    return join(this.dir, 'injected.log');
  }

  /** The PATH an executor gets: this directory first. */
  path(base = process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin'): string {
    return `${this.dir}:${base}`;
  }

  async arm(failures: number): Promise<void> {
    this.armed = failures;
    this.totalArmed += failures;
    await writeFile(this.counter, `${failures}\n`);
  }

  /** Disarms; returns how many of the armed failures were injected. */
  async disarm(): Promise<number> {
    const left = Number((await readFile(this.counter, 'utf8')).trim()) || 0;
    await writeFile(this.counter, '0\n');
    const injected = Math.max(0, this.armed - left);
    this.totalInjected += injected;
    this.armed = 0;
    return injected;
  }
}
