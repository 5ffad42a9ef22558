import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import {
  IPVSScheduler,
  LocalMode,
  NodePortAddressesKind,
  ProxyMode,
  defaultKubeProxyConfig,
  loadKubeProxyConfig,
  readKubeProxyConfigFile,
  type KubeProxyConfig,
} from '../src/config/index.js';
import { KubeProxyConfigError } from '../src/config/errors.js';

// Compiled to dist/test; the fixtures stay in the source tree.
const FIXTURES = fileURLToPath(new URL('../../test/fixtures/config/', import.meta.url));
const HEADER = 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n';

function load(body: string): { config: KubeProxyConfig; warnings: readonly string[] } {
  return loadKubeProxyConfig(HEADER + body);
}

/** Loads `text`, expects a KubeProxyConfigError and returns it. */
function refuse(text: string, source?: string): KubeProxyConfigError {
  let caught: unknown;
  try {
    loadKubeProxyConfig(text, { source });
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof KubeProxyConfigError, `expected a KubeProxyConfigError, got ${String(caught)}`);
  return caught;
}

function fields(err: KubeProxyConfigError): string[] {
  return err.problems.map((p) => p.field);
}

/** Expects exactly one problem, on `field`, whose message contains every one of `parts`. */
function refuseOne(body: string, field: string, ...parts: string[]): void {
  const err = refuse(HEADER + body);
  assert.deepEqual(fields(err), [field], err.message);
  const message = err.problems[0]?.message ?? '';
  for (const part of parts) assert.ok(message.includes(part), `"${message}" should mention ${part}`);
  assert.ok(err.message.includes(`${field}: ${message}`), err.message);
}

describe('defaults', () => {
  // pkg/proxy/apis/config/v1alpha1/defaults.go, cmd/kube-proxy/app/server_linux.go (platformApplyDefaults).
  const upstream: KubeProxyConfig = {
    mode: 'iptables',
    hostnameOverride: undefined,
    bindAddress: '0.0.0.0',
    healthzBindAddress: '0.0.0.0:10256',
    metricsBindAddress: '127.0.0.1:10249',
    masqueradeAll: false,
    masqueradeBit: 14,
    syncPeriodMs: 30_000,
    minSyncPeriodMs: 1_000,
    detectLocalMode: 'ClusterCIDR',
    detectLocal: { bridgeInterface: '', interfaceNamePrefix: '' },
    clusterCIDRs: [],
    nodePortAddresses: { kind: 'all' },
    iptables: { localhostNodePorts: true },
    ipvs: {
      scheduler: 'rr',
      excludeCIDRs: [],
      strictARP: false,
      tcpTimeoutMs: 0,
      tcpFinTimeoutMs: 0,
      udpTimeoutMs: 0,
    },
    conntrack: {
      maxPerCore: 32_768,
      min: 131_072,
      tcpEstablishedTimeoutMs: 24 * 3_600_000,
      tcpCloseWaitTimeoutMs: 3_600_000,
      tcpBeLiberal: false,
      udpTimeoutMs: 0,
      udpStreamTimeoutMs: 0,
    },
    configSyncPeriodMs: 15 * 60_000,
    clientConnection: {
      kubeconfig: '',
      acceptContentTypes: '',
      contentType: 'application/vnd.kubernetes.protobuf',
      qps: 5,
      burst: 10,
    },
    featureGates: {},
  };

  test('defaultKubeProxyConfig() matches upstream kube-proxy', () => {
    assert.deepEqual(defaultKubeProxyConfig(), upstream);
  });

  test('a file with only apiVersion and kind gives the defaults and no warnings', () => {
    const { config, warnings } = loadKubeProxyConfig(HEADER);
    assert.deepEqual(config, upstream);
    assert.deepEqual(warnings, []);
  });

  test('a kubeadm-style file full of zero values resolves to the defaults, without warnings', async () => {
    const { config, warnings } = await readKubeProxyConfigFile(join(FIXTURES, 'kubeadm-iptables.yaml'));
    assert.deepEqual(warnings, []);
    assert.deepEqual(config, {
      ...upstream,
      clusterCIDRs: [
        { family: 'IPv4', address: '10.244.0.0', prefix: 16, text: '10.244.0.0/16' },
        { family: 'IPv6', address: 'fd00:10:244::', prefix: 56, text: 'fd00:10:244::/56' },
      ],
      clientConnection: { ...upstream.clientConnection, kubeconfig: '/var/lib/kube-proxy/kubeconfig.conf' },
    });
  });

  test('nftables mode defaults nodePortAddresses to the primary node IPs', () => {
    assert.deepEqual(load('mode: nftables\n').config.nodePortAddresses, { kind: NodePortAddressesKind.Primary });
    assert.deepEqual(load('mode: ipvs\n').config.nodePortAddresses, { kind: NodePortAddressesKind.All });
  });

  test('defaults are fresh objects', () => {
    assert.notEqual(defaultKubeProxyConfig(), defaultKubeProxyConfig());
  });
});

describe('YAML and JSON', () => {
  test('the JSON and YAML forms of a file load to the same configuration', async () => {
    const json = await readKubeProxyConfigFile(join(FIXTURES, 'ipvs.json'));
    const yaml = await readKubeProxyConfigFile(join(FIXTURES, 'ipvs.yaml'));
    assert.deepEqual(json.config, yaml.config);
    assert.deepEqual(json.warnings, yaml.warnings);
  });

  test('an ipvs file is read field by field', async () => {
    const { config, warnings } = await readKubeProxyConfigFile(join(FIXTURES, 'ipvs.json'));
    assert.deepEqual(warnings, []);
    assert.equal(config.mode, ProxyMode.IPVS);
    assert.equal(config.hostnameOverride, 'node-a');
    assert.deepEqual(config.ipvs, {
      scheduler: IPVSScheduler.WeightedLeastConnection,
      excludeCIDRs: [
        { family: 'IPv4', address: '192.168.0.0', prefix: 16, text: '192.168.0.0/16' },
        { family: 'IPv6', address: 'fd00:1::', prefix: 64, text: 'fd00:1::/64' },
      ],
      strictARP: true,
      tcpTimeoutMs: 900_000,
      tcpFinTimeoutMs: 120_000,
      udpTimeoutMs: 300,
    });
    // ipvs mode takes its sync periods from the ipvs section, masquerading from the iptables section.
    assert.equal(config.syncPeriodMs, 90_000);
    assert.equal(config.minSyncPeriodMs, 500);
    assert.equal(config.masqueradeAll, true);
    assert.equal(config.masqueradeBit, 12);
    assert.deepEqual(config.nodePortAddresses, {
      kind: NodePortAddressesKind.CIDRs,
      cidrs: [
        { family: 'IPv4', address: '10.0.0.0', prefix: 8, text: '10.0.0.0/8' },
        { family: 'IPv6', address: 'fd00::', prefix: 64, text: 'fd00::/64' },
      ],
    });
    // Pointer fields keep an explicit 0; non-pointer durations keep their value.
    assert.equal(config.conntrack.maxPerCore, 0);
    assert.equal(config.conntrack.min, 0);
    assert.equal(config.conntrack.tcpEstablishedTimeoutMs, 0);
    assert.equal(config.conntrack.tcpCloseWaitTimeoutMs, 3_600_000);
    assert.equal(config.conntrack.udpTimeoutMs, 30_000);
  });

  test('YAML 1.1 booleans are booleans, as with go-yaml', () => {
    const { config } = load('ipvs:\n  strictARP: yes\niptables:\n  localhostNodePorts: off\n');
    assert.equal(config.ipvs.strictARP, true);
    assert.equal(config.iptables.localhostNodePorts, false);
  });

  test('a YAML syntax error is refused with its line and the parser error as cause', () => {
    const err = refuse(`${HEADER}iptables: [1\n`, 'proxy.yaml');
    assert.equal(err.problems.length, 1);
    assert.match(err.problems[0]?.message ?? '', /line 4, column 1/);
    assert.ok(err.cause instanceof Error);
    assert.equal(err.cause.name, 'YAMLParseError');
    assert.match(err.message, /proxy\.yaml/);
  });

  test('an empty document, a non-mapping document', () => {
    assert.match(refuse('').message, /empty/);
    assert.match(refuse('# only a comment\n').message, /empty/);
    assert.deepEqual(fields(refuse('- a\n- b\n')), ['']);
    assert.deepEqual(fields(refuse('"just a string"')), ['']);
  });

  test('only the first of several YAML documents is read, with a warning', () => {
    const { config, warnings } = loadKubeProxyConfig(`${HEADER}mode: ipvs\n---\n${HEADER}mode: nftables\n`);
    assert.equal(config.mode, ProxyMode.IPVS);
    assert.ok(
      warnings.some((w) => w.includes('2 YAML documents')),
      warnings.join('\n'),
    );
  });
});

describe('type meta', () => {
  test('wrong or missing apiVersion and kind are refused', () => {
    assert.deepEqual(fields(refuse('apiVersion: kubeproxy.config.k8s.io/v1alpha2\nkind: KubeProxyConfiguration\n')), [
      'apiVersion',
    ]);
    assert.deepEqual(fields(refuse('apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeletConfiguration\n')), [
      'kind',
    ]);
    assert.deepEqual(fields(refuse('mode: ipvs\n')), ['apiVersion', 'kind']);
    assert.match(refuse('kind: KubeProxyConfiguration\n').message, /apiVersion: missing/);
  });
});

describe('durations', () => {
  for (const [text, ms] of [
    ['30s', 30_000],
    ['1s', 1_000],
    ['1m30s', 90_000],
    ['500ms', 500],
    ['1h', 3_600_000],
    ['2h45m', 9_900_000],
    ['1.5s', 1_500],
    ['.5s', 500],
    ['100us', 0.1],
    ['100µs', 0.1],
    ['2000000ns', 2],
    ['+5s', 5_000],
    ['1h0m0s', 3_600_000],
  ] as const) {
    test(`"${text}" is ${ms} ms`, () => {
      assert.equal(load(`ipvs:\n  tcpTimeout: "${text}"\n`).config.ipvs.tcpTimeoutMs, ms);
    });
  }

  test('"0" and "0s" are zero (and zero sync periods take the default, as upstream)', () => {
    assert.equal(load('ipvs:\n  tcpTimeout: "0"\n').config.ipvs.tcpTimeoutMs, 0);
    const { config } = load('iptables:\n  syncPeriod: 0s\n  minSyncPeriod: 0s\n');
    assert.equal(config.syncPeriodMs, 30_000);
    assert.equal(config.minSyncPeriodMs, 1_000);
  });

  for (const bad of ['30', '5 s', '1d', '', '-', '.s', '1.2.3s', 's', '1s2', '3000000h']) {
    test(`malformed duration ${JSON.stringify(bad)} is refused`, () => {
      refuseOne(`ipvs:\n  tcpTimeout: "${bad}"\n`, 'ipvs.tcpTimeout', JSON.stringify(bad), 'duration');
    });
  }

  test('a duration given as a number is refused', () => {
    refuseOne('iptables:\n  syncPeriod: 30\n', 'iptables.syncPeriod', '30', 'must be a string');
  });

  test('a negative sync period is refused', () => {
    refuseOne('iptables:\n  syncPeriod: -30s\n', 'iptables.syncPeriod', '"-30s"', 'greater than 0');
    refuseOne('iptables:\n  minSyncPeriod: -1s\n', 'iptables.minSyncPeriod', '"-1s"', 'greater than or equal to 0');
    refuseOne('configSyncPeriod: -1m\n', 'configSyncPeriod', '"-1m0s"', 'greater than 0');
  });

  test('minSyncPeriod above syncPeriod is refused', () => {
    refuseOne('iptables:\n  syncPeriod: 5s\n  minSyncPeriod: 10s\n', 'iptables.syncPeriod', 'iptables.minSyncPeriod');
    refuseOne('mode: ipvs\nipvs:\n  syncPeriod: 1s\n  minSyncPeriod: 2s\n', 'ipvs.syncPeriod', 'ipvs.minSyncPeriod');
  });
});

describe('validation', () => {
  test('masqueradeBit must be within [0, 31]', () => {
    refuseOne('iptables:\n  masqueradeBit: 32\n', 'iptables.masqueradeBit', '32', '[0, 31]');
    refuseOne('iptables:\n  masqueradeBit: -1\n', 'iptables.masqueradeBit', '-1');
    refuseOne('iptables:\n  masqueradeBit: 1.5\n', 'iptables.masqueradeBit', '1.5', 'integer');
    assert.equal(load('iptables:\n  masqueradeBit: 0\n').config.masqueradeBit, 0);
    assert.equal(load('iptables:\n  masqueradeBit: 31\n').config.masqueradeBit, 31);
    refuseOne('mode: nftables\nnftables:\n  masqueradeBit: 32\n', 'nftables.masqueradeBit', '32');
  });

  test('mode must be iptables, ipvs, nftables or blank', () => {
    refuseOne('mode: userspace\n', 'mode', '"userspace"', 'iptables, ipvs, nftables or blank');
    refuseOne('mode: kernelspace\n', 'mode', '"kernelspace"');
    refuseOne('mode: IPVS\n', 'mode', '"IPVS"');
    assert.equal(load('mode: ""\n').config.mode, ProxyMode.IPTables);
    assert.equal(load('mode: nftables\n').config.mode, ProxyMode.NFTables);
  });

  test('clusterCIDR: one CIDR or a dual-stack pair', () => {
    assert.deepEqual(load('clusterCIDR: 10.244.1.7/16\n').config.clusterCIDRs, [
      { family: 'IPv4', address: '10.244.0.0', prefix: 16, text: '10.244.0.0/16' },
    ]);
    assert.equal(load('clusterCIDR: fd00::/48,10.0.0.0/8\n').config.clusterCIDRs.length, 2);
    refuseOne('clusterCIDR: 10.0.0.0\n', 'clusterCIDR', '"10.0.0.0"', 'not a valid CIDR');
    refuseOne('clusterCIDR: 10.0.0.0/33\n', 'clusterCIDR', '"10.0.0.0/33"');
    refuseOne('clusterCIDR: 10.0.0.0/8,10.1.0.0/16\n', 'clusterCIDR', '"10.0.0.0/8,10.1.0.0/16"', 'two IPv4');
    refuseOne('clusterCIDR: fd00::/48,fd01::/48\n', 'clusterCIDR', 'two IPv6');
    refuseOne('clusterCIDR: 10.0.0.0/8,fd00::/48,10.1.0.0/16\n', 'clusterCIDR', 'dual-stack pair');
    refuseOne('clusterCIDR: "10.0.0.0/8, fd00::/48"\n', 'clusterCIDR', 'spaces');
  });

  test('clusterCIDR is ignored (not validated) unless detectLocalMode is ClusterCIDR', () => {
    const { config, warnings } = load('detectLocalMode: NodeCIDR\nclusterCIDR: bogus\n');
    assert.deepEqual(config.clusterCIDRs, []);
    assert.ok(
      warnings.some((w) => w.startsWith('clusterCIDR: ignored')),
      warnings.join('\n'),
    );
  });

  test('detectLocalMode and its detectLocal settings', () => {
    assert.equal(load('detectLocalMode: ""\n').config.detectLocalMode, LocalMode.ClusterCIDR);
    const bridge = load('detectLocalMode: BridgeInterface\ndetectLocal:\n  bridgeInterface: cbr0\n').config;
    assert.equal(bridge.detectLocalMode, LocalMode.BridgeInterface);
    assert.equal(bridge.detectLocal.bridgeInterface, 'cbr0');
    const prefix = load('detectLocalMode: InterfaceNamePrefix\ndetectLocal:\n  interfaceNamePrefix: veth\n').config;
    assert.equal(prefix.detectLocal.interfaceNamePrefix, 'veth');
    refuseOne('detectLocalMode: BridgeInterface\n', 'detectLocal.bridgeInterface', 'must not be empty');
    refuseOne(
      'detectLocalMode: InterfaceNamePrefix\ndetectLocal:\n  bridgeInterface: cbr0\n',
      'detectLocal.interfaceNamePrefix',
      'must not be empty',
    );
    refuseOne('detectLocalMode: Guess\n', 'detectLocalMode', '"Guess"', '"NodeCIDR"');
  });

  test('ipvs.scheduler must be a kernel IPVS scheduler', () => {
    for (const name of ['rr', 'wrr', 'lc', 'wlc', 'lblc', 'lblcr', 'dh', 'sh', 'sed', 'nq', 'mh']) {
      assert.equal(load(`mode: ipvs\nipvs:\n  scheduler: ${name}\n`).config.ipvs.scheduler, name);
    }
    assert.equal(load('mode: ipvs\nipvs:\n  scheduler: ""\n').config.ipvs.scheduler, IPVSScheduler.RoundRobin);
    refuseOne('mode: ipvs\nipvs:\n  scheduler: fastest\n', 'ipvs.scheduler', '"fastest"', 'rr, wrr');
  });

  test('ipvs timeouts and excludeCIDRs are checked in ipvs mode', () => {
    refuseOne('mode: ipvs\nipvs:\n  tcpFinTimeout: -1s\n', 'ipvs.tcpFinTimeout', '"-1s"');
    refuseOne('mode: ipvs\nipvs:\n  excludeCIDRs: [10.0.0.0/8, nope]\n', 'ipvs.excludeCIDRs[1]', '"nope"');
  });

  test('section values are only checked in the mode that uses them; elsewhere they warn', () => {
    const { config, warnings } = load(
      'mode: iptables\nipvs:\n  scheduler: fastest\n  tcpTimeout: -1s\nnftables:\n  masqueradeBit: 40\n',
    );
    assert.equal(config.mode, ProxyMode.IPTables);
    for (const field of ['ipvs.scheduler', 'ipvs.tcpTimeout', 'nftables.masqueradeBit']) {
      assert.ok(
        warnings.some((w) => w.startsWith(`${field}: invalid value`)),
        `${field} in\n${warnings.join('\n')}`,
      );
    }
  });

  test('nodePortAddresses: CIDRs or "primary"', () => {
    assert.deepEqual(load('nodePortAddresses: [primary]\n').config.nodePortAddresses, {
      kind: NodePortAddressesKind.Primary,
    });
    refuseOne('nodePortAddresses: [10.0.0.0/8, 10.1.2.3]\n', 'nodePortAddresses[1]', '"10.1.2.3"', 'valid CIDR');
    refuseOne(
      'nodePortAddresses: [10.0.0.0/8, primary]\n',
      'nodePortAddresses[1]',
      "can't use both 'primary' and CIDRs",
    );
    refuseOne('nodePortAddresses: 10.0.0.0/8\n', 'nodePortAddresses', 'list');
  });

  test('bind addresses', () => {
    const v6 = load('bindAddress: "::1"\n').config;
    assert.equal(v6.healthzBindAddress, '[::]:10256');
    assert.equal(v6.metricsBindAddress, '[::1]:10249');
    const bare = load('healthzBindAddress: 10.0.0.1\nmetricsBindAddress: "fd00::1"\n').config;
    assert.equal(bare.healthzBindAddress, '10.0.0.1:10256');
    assert.equal(bare.metricsBindAddress, '[fd00::1]:10249');
    assert.equal(load('metricsBindAddress: 0.0.0.0:9999\n').config.metricsBindAddress, '0.0.0.0:9999');
    refuseOne('bindAddress: 10.10.12.11:2000\n', 'bindAddress', '"10.10.12.11:2000"');
    refuseOne('healthzBindAddress: 0.0.0.0:0\n', 'healthzBindAddress', '"0"', 'valid port');
    refuseOne('metricsBindAddress: 127.0.0.1:http\n', 'metricsBindAddress', '"http"');
    refuseOne('metricsBindAddress: localhost:10249\n', 'metricsBindAddress', '"localhost"', 'valid IP');
    refuseOne('healthzBindAddress: nonsense\n', 'healthzBindAddress', 'IP:port');
  });

  test('hostnameOverride is trimmed and lower-cased; blank is refused', () => {
    assert.equal(load('hostnameOverride: " Node-1"\n').config.hostnameOverride, 'node-1');
    refuseOne('hostnameOverride: "   "\n', 'hostnameOverride', 'blank');
  });

  test('conntrack, clientConnection and oomScoreAdj ranges', () => {
    refuseOne('conntrack:\n  maxPerCore: -1\n', 'conntrack.maxPerCore', '-1');
    refuseOne('conntrack:\n  tcpCloseWaitTimeout: -5s\n', 'conntrack.tcpCloseWaitTimeout', '"-5s"');
    refuseOne('clientConnection:\n  burst: -5\n', 'clientConnection.burst', '-5');
    refuseOne('oomScoreAdj: 1001\n', 'oomScoreAdj', '1001', '[-1000, 1000]');
  });

  test('values of the wrong type are refused', () => {
    refuseOne('ipvs:\n  strictARP: maybe\n', 'ipvs.strictARP', '"maybe"', 'true or false');
    refuseOne('hostnameOverride: 42\n', 'hostnameOverride', '42', 'string');
    refuseOne('iptables: true\n', 'iptables', 'mapping');
    refuseOne('featureGates:\n  Foo: "yes please"\n', 'featureGates.Foo', 'true or false');
  });

  test('every problem of a file is reported at once', async () => {
    let caught: unknown;
    try {
      await readKubeProxyConfigFile(join(FIXTURES, 'invalid-many.yaml'));
    } catch (err) {
      caught = err;
    }
    assert.ok(caught instanceof KubeProxyConfigError);
    assert.deepEqual(fields(caught).sort(), [
      'clusterCIDR',
      'healthzBindAddress',
      'iptables.masqueradeBit',
      'ipvs.scheduler',
      'ipvs.syncPeriod',
      'ipvs.tcpTimeout',
    ]);
    assert.equal(caught.name, 'KubeProxyConfigError');
    assert.ok(caught instanceof Error);
    assert.match(caught.message, /invalid-many\.yaml \(6 problems\)/);
    assert.match(caught.message, /ipvs\.syncPeriod: invalid value "30 seconds"/);
    assert.equal(caught.source, join(FIXTURES, 'invalid-many.yaml'));
  });
});

describe('warnings', () => {
  test('unknown fields are named by their full path, with a hint for typos', () => {
    const { config, warnings } = load(
      'iptables:\n  masqueradBit: 3\nipvs:\n  Scheduler: wrr\nconntrack:\n  maxPerCPU: 4\ndetectLocal:\n  bridge: br0\nclientConnection:\n  qpss: 1\nfoo: bar\n',
    );
    assert.equal(config.masqueradeBit, 14, 'the misspelt field is not used');
    const unknown = warnings.filter((w) => w.includes('unknown field'));
    assert.deepEqual(unknown.map((w) => w.split(':')[0]).sort(), [
      'clientConnection.qpss',
      'conntrack.maxPerCPU',
      'detectLocal.bridge',
      'foo',
      'iptables.masqueradBit',
      'ipvs.Scheduler',
    ]);
    assert.equal(unknown.length, 6);
    assert.ok(
      warnings.includes(
        'iptables.masqueradBit: unknown field (did you mean "masqueradeBit"?); it is not part of KubeProxyConfiguration and is ignored',
      ),
    );
    assert.ok(warnings.some((w) => w.startsWith('ipvs.Scheduler: unknown field (did you mean "scheduler"?)')));
  });

  test('fields kpx does not use are accepted with an "ignored" warning when not at their default', () => {
    const { warnings } = load(
      'enableProfiling: true\nbindAddressHardFail: true\nportRange: 30000-32767\noomScoreAdj: -500\nshowHiddenMetricsForVersion: "1.30"\nfeatureGates:\n  SomeGate: true\nlogging:\n  format: json\nwinkernel:\n  enableDSR: true\niptables:\n  snatNodeInternalIP: true\n',
    );
    for (const field of [
      'enableProfiling',
      'bindAddressHardFail',
      'portRange',
      'oomScoreAdj',
      'showHiddenMetricsForVersion',
      'featureGates',
      'logging',
      'winkernel',
      'iptables.snatNodeInternalIP',
    ]) {
      assert.ok(
        warnings.some((w) => w.startsWith(`${field}: ignored`)),
        `${field} in\n${warnings.join('\n')}`,
      );
    }
    const quiet = load(
      'enableProfiling: false\noomScoreAdj: -999\nlogging:\n  format: text\n  flushFrequency: 5s\nfeatureGates: {}\n',
    );
    assert.deepEqual(quiet.warnings, []);
  });

  test('feature gates are kept', () => {
    assert.deepEqual(load('featureGates:\n  A: true\n  B: false\n').config.featureGates, { A: true, B: false });
  });

  test('settings of another mode are reported as ignored', () => {
    const { warnings } = load(
      'mode: ipvs\niptables:\n  syncPeriod: 10s\n  localhostNodePorts: false\n  masqueradeBit: 10\nnftables:\n  masqueradeAll: true\n',
    );
    assert.ok(warnings.includes('iptables.syncPeriod: ignored in ipvs mode'), warnings.join('\n'));
    assert.ok(warnings.includes('iptables.localhostNodePorts: ignored in ipvs mode'));
    assert.ok(warnings.includes('nftables.masqueradeAll: ignored in ipvs mode'));
    assert.ok(!warnings.some((w) => w.startsWith('iptables.masqueradeBit')), 'ipvs mode uses iptables.masqueradeBit');
  });

  test('a repeated field warns and the last value wins', () => {
    const { config, warnings } = load('mode: iptables\nmode: ipvs\n');
    assert.equal(config.mode, ProxyMode.IPVS);
    assert.deepEqual(warnings, ['mode: duplicate field; the last value is used']);
  });

  test('fields removed from the API are named as such', async () => {
    const { config, warnings } = await readKubeProxyConfigFile(join(FIXTURES, 'legacy-masquerade-all.yaml'));
    assert.equal(config.masqueradeAll, true);
    assert.equal(config.minSyncPeriodMs, 1_000, 'an iptables minSyncPeriod of 0s is defaulted to 1s, as upstream');
    assert.deepEqual(
      warnings.map((w) => w.split(':')[0]),
      ['udpIdleTimeout', 'resourceContainer', 'conntrack.max'],
    );
    assert.ok(
      warnings.every((w) => w.includes('unknown field (')),
      warnings.join('\n'),
    );
  });
});

describe('masqueradeAll and sync periods by mode', () => {
  test('iptables.masqueradeAll applies in iptables and ipvs mode', () => {
    assert.equal(load('iptables:\n  masqueradeAll: true\n').config.masqueradeAll, true);
    assert.equal(load('mode: ipvs\niptables:\n  masqueradeAll: true\n').config.masqueradeAll, true);
  });

  test('nftables mode reads nftables.masqueradeAll, masqueradeBit and sync periods', () => {
    const { config, warnings } = load(
      'mode: nftables\niptables:\n  masqueradeAll: true\nnftables:\n  masqueradeBit: 3\n  syncPeriod: 20s\n  minSyncPeriod: 2s\n',
    );
    assert.equal(config.masqueradeAll, false);
    assert.equal(config.masqueradeBit, 3);
    assert.equal(config.syncPeriodMs, 20_000);
    assert.equal(config.minSyncPeriodMs, 2_000);
    assert.ok(warnings.includes('iptables.masqueradeAll: ignored in nftables mode'));
  });

  test('ipvs mode reads ipvs sync periods; its minSyncPeriod defaults to 0', () => {
    const { config } = load('mode: ipvs\niptables:\n  syncPeriod: 10s\n');
    assert.equal(config.syncPeriodMs, 30_000);
    assert.equal(config.minSyncPeriodMs, 0);
  });

  test('top-level masqueradeAll, syncPeriod, minSyncPeriod are accepted as aliases with a warning', () => {
    const { config, warnings } = load('masqueradeAll: true\nsyncPeriod: 45s\nminSyncPeriod: 3s\n');
    assert.equal(config.masqueradeAll, true);
    assert.equal(config.syncPeriodMs, 45_000);
    assert.equal(config.minSyncPeriodMs, 3_000);
    assert.deepEqual(
      Object.keys(config.iptables),
      ['localhostNodePorts'],
      'one value per setting: none left in the section',
    );
    assert.equal(warnings.length, 3);
    assert.ok(
      warnings.every((w) => w.includes('not a KubeProxyConfiguration v1alpha1 field')),
      warnings.join('\n'),
    );
    assert.ok(warnings[0]?.startsWith('masqueradeAll:') && warnings[0].includes('used as iptables.masqueradeAll'));
  });

  test('when both are set, the per-mode field wins over the top-level alias', () => {
    const { config, warnings } = load(
      'masqueradeAll: true\nsyncPeriod: 45s\niptables:\n  masqueradeAll: false\n  syncPeriod: 20s\n',
    );
    assert.equal(config.masqueradeAll, false);
    assert.equal(config.syncPeriodMs, 20_000);
    assert.ok(
      warnings.some(
        (w) => w.startsWith('masqueradeAll:') && w.includes('iptables.masqueradeAll is also set and takes precedence'),
      ),
    );
    const nft = load('mode: nftables\nmasqueradeAll: true\niptables:\n  masqueradeAll: false\n');
    assert.equal(nft.config.masqueradeAll, true, 'the alias maps to nftables.masqueradeAll in nftables mode');
    assert.ok(
      nft.warnings.some((w) => w.startsWith('masqueradeAll:') && w.endsWith('used as nftables.masqueradeAll')),
      nft.warnings.join('\n'),
    );
  });

  test('an alias is validated like the field it stands for', () => {
    refuseOne('syncPeriod: 1s\nminSyncPeriod: 5s\n', 'syncPeriod', 'minSyncPeriod');
    refuseOne('masqueradeAll: sometimes\n', 'masqueradeAll', 'true or false');
  });
});

describe('readKubeProxyConfigFile', () => {
  test('reads a file written to disk', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpx-config-'));
    try {
      const path = join(dir, 'config.conf');
      await writeFile(path, `${HEADER}mode: nftables\nclusterCIDR: 10.96.0.0/12\n`);
      const { config, warnings } = await readKubeProxyConfigFile(path);
      assert.equal(config.mode, ProxyMode.NFTables);
      assert.deepEqual(config.clusterCIDRs, [
        { family: 'IPv4', address: '10.96.0.0', prefix: 12, text: '10.96.0.0/12' },
      ]);
      assert.deepEqual(warnings, []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a missing file is a KubeProxyConfigError with the fs error as cause', async () => {
    const path = join(tmpdir(), 'kpx-no-such-dir', 'config.conf');
    await assert.rejects(readKubeProxyConfigFile(path), (err: unknown) => {
      assert.ok(err instanceof KubeProxyConfigError);
      assert.equal((err.cause as NodeJS.ErrnoException).code, 'ENOENT');
      assert.ok(err.message.includes(path));
      return true;
    });
  });

  test('errors name the source file', async () => {
    await assert.rejects(readKubeProxyConfigFile(join(FIXTURES, 'invalid-many.yaml')), /invalid-many\.yaml/);
  });
});
