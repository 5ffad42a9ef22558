// Durations as Go's time.ParseDuration reads them ("1h2m3.5s", "500ms", "100us", "-5s", "0"): kube-proxy's
// configuration file and kpx's command-line flags use this one parser.

const NS_PER_UNIT: Readonly<Record<string, bigint>> = {
  ns: 1n,
  us: 1_000n,
  '\u00b5s': 1_000n, // µs, micro sign
  '\u03bcs': 1_000n, // μs, Greek mu
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};
const NS_PER_DAY = 86_400_000_000_000n;
const MAX_DURATION_NS = 2n ** 63n - 1n;

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

export interface ParseDurationOptions {
  /** Also accept `d` (24h), which Go does not: command-line flags take `--max-age 7d`. Default false. */
  readonly days?: boolean;
}

/**
 * Parses a Go duration ("1h30m", "1.5s", "-5s", "0") into milliseconds (fractional below 1 ms); `undefined` when Go
 * would refuse it (no unit, an unknown unit, spaces, beyond ±292 years).
 */
export function parseDuration(text: string, opts: ParseDurationOptions = {}): number | undefined {
  let s = text;
  let negative = false;
  if (s.startsWith('-') || s.startsWith('+')) {
    negative = s.startsWith('-');
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') return undefined;
  let totalNs = 0n;
  const term = /^(\d*)(?:\.(\d*))?([^\d.]+)/;
  while (s !== '') {
    const m = term.exec(s);
    if (m === null) return undefined;
    const [whole, intPart = '', fracPart, unitName = ''] = m;
    if (intPart === '' && (fracPart === undefined || fracPart === '')) return undefined;
    const unit = opts.days === true && unitName === 'd' ? NS_PER_DAY : NS_PER_UNIT[unitName];
    if (unit === undefined) return undefined;
    totalNs += BigInt(intPart === '' ? '0' : intPart) * unit;
    if (fracPart !== undefined && fracPart !== '') {
      totalNs += (BigInt(fracPart) * unit) / 10n ** BigInt(fracPart.length);
    }
    if (totalNs > MAX_DURATION_NS + (negative ? 1n : 0n)) return undefined;
    s = s.slice(whole.length);
  }
  const ms = Number(totalNs) / 1e6;
  return negative ? -ms : ms;
}

/** Formats milliseconds the way Go prints a time.Duration ("1h0m0s", "1.5s", "500ms", "0s"; below 1 ms in ms, not µs). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  const sign = ms < 0 ? '-' : '';
  const abs = Math.abs(ms);
  if (abs < SECOND) return `${sign}${+abs.toFixed(6)}ms`;
  const h = Math.floor(abs / HOUR);
  const m = Math.floor((abs % HOUR) / MINUTE);
  const sec = +((abs % MINUTE) / SECOND).toFixed(9);
  const hs = h > 0 ? `${h}h` : '';
  const ms2 = h > 0 || m > 0 ? `${m}m` : '';
  return `${sign}${hs}${ms2}${sec}s`;
}
