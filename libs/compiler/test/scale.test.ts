// Generated clusters large enough for the compiler's fast paths (and, with > 1,000 endpoints, kube-proxy's
// large-cluster mode) must compile to exactly what the compiler gave before its performance work.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadClusterState } from '@kpx/model';
import { compileIptables, defaultIptablesOptions, renderRestore } from '../src/index.js';
import { digests, scaleCluster } from './scale-fixture.js';

const api = { loadClusterState, compileIptables, renderRestore, defaultIptablesOptions };

/** Computed with the compiler of commit c3304aa (before the performance work), by the same digests(). */
const EXPECTED: Record<string, Record<string, string>> = {
  '60 services (per-endpoint comments)': {
    'IPv4/endpoints': '88b0768f2f31e8bb',
    'IPv4/defaults': 'd6f74cf3aa1f7b48',
    'IPv4/masqueradeAll, no node hints, not liberal': 'd9004159a66d4ede',
    'IPv4/NodeCIDR, primary node port address': '6514662e9020ba2a',
    'IPv4/interface prefix, node port CIDRs': '0084a7ae9ab79d43',
    'IPv6/endpoints': '55b6c838222781ea',
    'IPv6/defaults': '25886be5447f936c',
    'IPv6/masqueradeAll, no node hints, not liberal': 'dec1c111d576ede5',
    'IPv6/NodeCIDR, primary node port address': '764f58c164f2ad0b',
    'IPv6/interface prefix, node port CIDRs': '3fa0c891134eba8f',
  },
  '200 services (large-cluster mode)': {
    'IPv4/endpoints': 'f08823ec098a293c',
    'IPv4/defaults': 'b3ce1cdb92a46f32',
    'IPv4/masqueradeAll, no node hints, not liberal': 'e215d7cf8af178cd',
    'IPv4/NodeCIDR, primary node port address': '0416926f1a750d1e',
    'IPv4/interface prefix, node port CIDRs': 'c39dbc20df77b124',
    'IPv6/endpoints': 'e9bcb7ffb9faffe6',
    'IPv6/defaults': 'f10d5be4b5543efb',
    'IPv6/masqueradeAll, no node hints, not liberal': 'd4dd1769568020c9',
    'IPv6/NodeCIDR, primary node port address': '39646b3a2f69fdbe',
    'IPv6/interface prefix, node port CIDRs': 'c8026c6511249d06',
  },
};

for (const [name, services, seed] of [
  ['60 services (per-endpoint comments)', 60, 1],
  ['200 services (large-cluster mode)', 200, 2],
] as const) {
  test(`generated cluster of ${name}: rules byte-identical to the pre-optimization compiler`, () => {
    const got = digests(api, scaleCluster(services, seed));
    assert.deepEqual(got, EXPECTED[name]);
  });
}
