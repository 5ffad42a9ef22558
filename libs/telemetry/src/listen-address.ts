// `host:port` listen addresses, as kube-proxy's --metrics-bind-address / --healthz-bind-address take them.

import { isIPv4, isIPv6 } from 'node:net';
import { ListenAddressError } from './errors.js';

/** Host used when an address gives only `:port`. */
export const DefaultListenHost = '127.0.0.1';

export interface ListenAddress {
  /** IPv4 or IPv6 address (without brackets), or a host name. */
  readonly host: string;
  /** 0 lets the system pick one. */
  readonly port: number;
}

const hostnamePattern = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/**
 * Parses `host:port`, `[ipv6]:port` or `:port` (host 127.0.0.1, not every interface: say `0.0.0.0:port` or `[::]:port`
 * for that). Throws ListenAddressError naming the value.
 */
export function parseListenAddress(value: string): ListenAddress {
  let host: string;
  let portText: string;
  if (value.startsWith('[')) {
    const close = value.indexOf(']');
    if (close < 0) throw new ListenAddressError(value, 'missing "]" after the IPv6 address');
    host = value.slice(1, close);
    if (!isIPv6(host)) throw new ListenAddressError(value, `${JSON.stringify(host)} is not an IPv6 address`);
    if (value[close + 1] !== ':') throw new ListenAddressError(value, 'expected ":port" after "]"');
    portText = value.slice(close + 2);
  } else {
    const colon = value.lastIndexOf(':');
    if (colon < 0) throw new ListenAddressError(value, 'missing ":port"');
    host = value.slice(0, colon);
    portText = value.slice(colon + 1);
    if (host.includes(':')) throw new ListenAddressError(value, 'an IPv6 address must be in brackets, e.g. [::1]:10249');
    if (host === '') host = DefaultListenHost;
    else if (!isIPv4(host) && !hostnamePattern.test(host)) {
      throw new ListenAddressError(value, `${JSON.stringify(host)} is neither an IPv4 address nor a host name`);
    }
  }
  if (!/^[0-9]{1,5}$/.test(portText)) throw new ListenAddressError(value, `port ${JSON.stringify(portText)} is not a number`);
  const port = Number(portText);
  if (port > 65535) throw new ListenAddressError(value, `port ${port} is out of range 0-65535`);
  return { host, port };
}

/** `host:port`, with IPv6 hosts in brackets. */
export function formatListenAddress(address: ListenAddress): string {
  return isIPv6(address.host) ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}
