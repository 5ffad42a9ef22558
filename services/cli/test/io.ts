// The kpx command line run in the test's process, its output captured as text.
import type { Io } from '../src/io.js';
import { main } from '../src/main.js';

/** An Io collecting what is written, as text (stdout may get UTF-8 bytes: a render is written as such). */
export interface TextIo extends Io {
  out: string;
  err: string;
}

export function textIo(): TextIo {
  const decoder = new TextDecoder();
  const io: TextIo = {
    out: '',
    err: '',
    stdout: (t) => {
      io.out += typeof t === 'string' ? t : decoder.decode(t, { stream: true });
    },
    stderr: (t) => {
      io.err += t;
    },
  };
  return io;
}

/** Runs `kpx ...argv`; its exit code and output. */
export async function runKpx(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const io = textIo();
  const code = await main(argv, io);
  return { code, out: io.out, err: io.err };
}
