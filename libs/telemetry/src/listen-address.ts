// `host:port` listen addresses, as kube-proxy's --metrics-bind-address / --healthz-bind-address take them.

import { isIPv4, isIPv6 } from 'node:net';
import { parsePort, splitHostPort } from '@kpx/common';
import { ListenAddressError } from './errors.js';

/** Host used when an address gives only `:port`. */
export const DefaultListenHost = '127.0.0.1';

export interface ListenAddress {
  /** IPv4 or IPv6 address (without brackets), or a host name. */
  readonly host: string;
  /** 0 lets the system pick one. */
  readonly port: number;
}

const hostnamePattern =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/**
 * Parses `host:port`, `[ipv6]:port` or `:port` (host 127.0.0.1, not every interface: say `0.0.0.0:port` or `[::]:port`
 * for that). Throws ListenAddressError naming the value.
 */
export function parseListenAddress(value: string): ListenAddress {
  const split = splitHostPort(value);
  if (split.error !== undefined) throw new ListenAddressError(value, split.error);
  let host = split.host;
  if (value.startsWith('[')) {
    if (!isIPv6(host)) throw new ListenAddressError(value, `${JSON.stringify(host)} is not an IPv6 address`);
  } else if (host === '') {
    host = DefaultListenHost;
  } else if (!isIPv4(host) && !hostnamePattern.test(host)) {
    throw new ListenAddressError(value, `${JSON.stringify(host)} is neither an IPv4 address nor a host name`);
  }
  const port = parsePort(split.port);
  if (port === undefined)
    throw new ListenAddressError(value, `port ${JSON.stringify(split.port)} is not a number from 0 to 65535`);
  return { host, port };
}

/** `host:port`, with IPv6 hosts in brackets. */
export function formatListenAddress(address: ListenAddress): string {
  return isIPv6(address.host) ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}
