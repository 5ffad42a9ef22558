// The command line of every kpx command: parsing its flags (-h/--help included), and the flags several commands
// share — the output format, the IP family, a required flag, a generation, a duration — each with one wording of
// its usage error.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { parseDuration as parseGoDuration } from '@kpx/model';
import { UsageError } from './errors.js';
import type { Io } from './io.js';

type FlagOptions = NonNullable<ParseArgsConfig['options']>;

const HelpFlag = { help: { type: 'boolean', short: 'h' } } as const;

type CommandConfig<O extends FlagOptions> = {
  args: string[];
  options: O & typeof HelpFlag;
  strict: true;
  allowPositionals: false;
};

/** The parsed values of a command's flags. */
export type FlagValues<O extends FlagOptions> = ReturnType<typeof parseArgs<CommandConfig<O>>>['values'];

/**
 * The values of `argv` as flags of `options` (plus -h/--help): a flag that is unknown, lacks its value or is not
 * one is a usage error followed by `usage`. With --help, `usage` goes to stdout and the result is undefined (the
 * command then exits 0).
 */
export function parseFlags<const O extends FlagOptions>(
  argv: readonly string[],
  options: O,
  usage: string,
  io: Io,
): FlagValues<O> | undefined {
  let values: FlagValues<O>;
  try {
    ({ values } = parseArgs<CommandConfig<O>>({
      args: [...argv],
      options: { ...options, ...HelpFlag },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${usage}`);
  }
  // The generic values type does not resolve inside the function: --help is a boolean flag.
  if ((values as { help?: boolean }).help === true) {
    io.stdout(usage);
    return undefined;
  }
  return values;
}

/** The value of a flag that must be given (and not empty). */
export function required(value: string | undefined, flag: string, usage: string): string {
  if (!value) throw new UsageError(`--${flag} is required\n${usage}`);
  return value;
}

export const OutputFormat = { Table: 'table', Json: 'json', Yaml: 'yaml' } as const;
export type OutputFormat = (typeof OutputFormat)[keyof typeof OutputFormat];

/** -o FORMAT, table by default. */
export const OutputFlag = { output: { type: 'string', short: 'o', default: OutputFormat.Table } } as const;

/** The -o value, one of `allowed`. */
export function outputFormat<F extends OutputFormat>(value: string, allowed: readonly F[]): F {
  const format = allowed.find((f) => f === value);
  if (format === undefined) throw new UsageError(`-o must be ${oneOf(allowed)}, not ${JSON.stringify(value)}`);
  return format;
}

/** --ip-family ipv4|ipv6, ipv4 by default. */
export const IpFamilyFlag = { 'ip-family': { type: 'string', default: 'ipv4' } } as const;

/** The --ip-family value as the family's name on the wire. */
export function ipFamilyOf(value: string): 'IPv4' | 'IPv6' {
  if (value === 'ipv4') return 'IPv4';
  if (value === 'ipv6') return 'IPv6';
  throw new UsageError(`--ip-family must be ipv4 or ipv6, not ${JSON.stringify(value)}`);
}

/** A generation number flag; undefined when not given. */
export function generationOf(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new UsageError(`${flag} must be a generation number, not ${JSON.stringify(text)}`);
  return n;
}

/** A duration flag in Go's syntax plus days (`90s`, `15m`, `1h30m`, `500ms`, `7d`) → whole milliseconds. */
export function parseDuration(text: string, flag: string): number {
  const ms = parseGoDuration(text, { days: true });
  if (ms === undefined || ms < 0)
    throw new UsageError(`${flag} must be a duration like 90s, 15m or 24h, not ${JSON.stringify(text)}`);
  return Math.round(ms);
}

/** "a", "a or b", "a, b or c". */
function oneOf(words: readonly string[]): string {
  return words.length < 2 ? (words[0] ?? '') : `${words.slice(0, -1).join(', ')} or ${words.at(-1)}`;
}
