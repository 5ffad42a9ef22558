// `host:port` as Go's net.SplitHostPort reads it: kube-proxy's healthz/metrics bind addresses and kpx's listen flags.

export type HostPortSplit =
  | { readonly host: string; readonly port: string; readonly error?: undefined }
  | { readonly error: string };

/**
 * Go's net.SplitHostPort: `host:port`, `[ipv6]:port` (brackets removed from the host), `:port` (empty host). Neither
 * part is checked beyond the syntax; `error` says what is wrong otherwise.
 */
export function splitHostPort(s: string): HostPortSplit {
  const colon = s.lastIndexOf(':');
  if (colon < 0) return { error: 'missing ":port"' };
  let host: string;
  let j = 0;
  let k = 0;
  if (s.startsWith('[')) {
    const end = s.indexOf(']');
    if (end < 0) return { error: 'missing "]" after the IPv6 address' };
    if (end + 1 === s.length) return { error: 'missing ":port"' };
    if (end + 1 !== colon) return { error: s[end + 1] === ':' ? 'too many colons' : 'expected ":port" after "]"' };
    host = s.slice(1, end);
    j = 1;
    k = end + 1;
  } else {
    host = s.slice(0, colon);
    if (host.includes(':')) return { error: 'an IPv6 address must be in brackets, e.g. [::1]:10249' };
  }
  if (s.indexOf('[', j) >= 0) return { error: 'unexpected "["' };
  if (s.indexOf(']', k) >= 0) return { error: 'unexpected "]"' };
  return { host, port: s.slice(colon + 1) };
}

/** A port number written in decimal (no sign, no spaces), 0 to 65535; `undefined` otherwise. */
export function parsePort(text: string): number | undefined {
  if (!/^[0-9]{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port <= 65535 ? port : undefined;
}
