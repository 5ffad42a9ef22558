// No text escapes its place (issue #13): objects with names built to break the output (a newline that starts
// `*filter`/`COMMIT` lines, quotes that end a --comment, spaces, numbers and maps as names) are rejected with
// a diagnostic, and every line of every mode's output still matches the grammar kpx emits.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runKpx } from './io.js';

const tmp = mkdtempSync(join(tmpdir(), 'kpx-adversarial-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Every adversarial string holds `zz`; no valid object's text does. */
const EVIL = [
  'zz\n*filter\n-A INPUT -j DROP\nCOMMIT',
  'zz"q',
  'zz q',
  "zz'q",
  'zz\\q',
  'zz\tq',
  'zz\u2028q',
  'zz;q',
  'zz -j ACCEPT',
];

const VALID = `apiVersion: v1
kind: Node
metadata: {name: n1, labels: {topology.kubernetes.io/zone: z1}}
spec: {podCIDRs: [10.244.1.0/24, "fd00:244:1::/64"]}
status: {addresses: [{type: InternalIP, address: 10.0.0.1}, {type: InternalIP, address: "fd00::1"}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  healthCheckNodePort: 31000
  ipFamilyPolicy: PreferDualStack
  clusterIPs: [10.96.0.20, "fd00:10:96::20"]
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]
status: {loadBalancer: {ingress: [{ip: 192.0.2.10}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-a, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.244.1.10], nodeName: n1, zone: z1}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-b, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv6
ports: [{name: http, port: 8080}]
endpoints: [{addresses: ["fd00:244:1::10"], nodeName: n1, zone: z1}]
`;

/** JSON, so that every string arrives exactly as written. */
function adversarialObjects(): unknown[] {
  const out: unknown[] = [];
  const svc = (name: unknown, namespace: unknown, portName: unknown, ip: string): unknown => ({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace, labels: { app: 'x' } },
    spec: {
      type: 'NodePort',
      clusterIP: ip,
      ports: [
        { name: portName, port: 80, nodePort: 30000 + out.length },
        { name: 'b', port: 81 },
      ],
    },
  });
  EVIL.forEach((e, i) => {
    out.push(svc(e, 'shop', 'http', `10.96.1.${i + 1}`));
    out.push(svc(`ok${i}`, 'shop', e, `10.96.2.${i + 1}`));
    out.push(svc(`ns${i}`, e, 'http', `10.96.3.${i + 1}`));
    out.push(svc(`lbl${i}`, 'shop', 'http', `10.96.4.${i + 1}`));
    (out[out.length - 1] as { metadata: { labels: Record<string, string> } }).metadata.labels = { app: e };
    out.push({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: `ok${i}-a`, namespace: 'shop', labels: { 'kubernetes.io/service-name': `ok${i}` } },
      addressType: 'IPv4',
      ports: [{ name: e, port: 8080 }],
      endpoints: [{ addresses: ['10.244.1.20'], nodeName: e }],
    });
    out.push({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: e },
      status: { addresses: [{ type: 'InternalIP', address: '10.0.0.9' }] },
    });
  });
  out.push(
    svc(12345, 'shop', 'http', '10.96.5.1'),
    svc({ a: 1 }, 'shop', 'http', '10.96.5.2'),
    svc('num', 'shop', 7, '10.96.5.3'),
  );
  return out;
}

const RESTORE_LINE = /^(\*(nat|filter)|:[A-Z0-9-]+ [A-Z-]+ \[0:0\]|-A [A-Z0-9-]+ .*|COMMIT)$/;
const IPVSADM_LINE = /^(-A -[tus] \S+ -s [a-z]+( -[a-z] \S+)*( -p \d+)?|-a -[tus] \S+ -r \S+ -[mgi] -w \d+)$/;
const IPSET_LINE = /^(create KUBE-[A-Z0-9-]+ [a-z:,]+( [a-z0-9-]+)*|add KUBE-[A-Z0-9-]+ [0-9a-fA-F.:,[\]/a-z-]+)$/;
/** A comment: quoted (no quote or backslash inside) or a single word; printable ASCII only. */
const COMMENT = /--comment ("[\x20-\x21\x23-\x5b\x5d-\x7e]*"|[\x21\x23-\x5b\x5d-\x7e]+)(?= |$)/g;

/** Checks iptables-restore text: line grammar, *filter then *nat, each closed by COMMIT, comments well-formed. */
function checkRestore(lines: readonly string[], what: string): void {
  const tables = lines.filter((l) => l.startsWith('*') || l === 'COMMIT');
  assert.deepEqual(tables, ['*filter', 'COMMIT', '*nat', 'COMMIT'], `${what}: tables`);
  for (const l of lines) {
    assert.match(l, RESTORE_LINE, `${what}: ${JSON.stringify(l)}`);
    // Quotes only as a comment's own; every --comment well formed.
    const withoutComments = l.replace(COMMENT, '--comment C');
    assert.doesNotMatch(withoutComments, /["\\]/, `${what}: stray quote ${JSON.stringify(l)}`);
    assert.equal(
      (l.match(/--comment/g) ?? []).length,
      (l.match(COMMENT) ?? []).length,
      `${what}: malformed comment ${JSON.stringify(l)}`,
    );
  }
}

function checkOutput(out: string, mode: string, what: string): void {
  assert.ok(out.endsWith('\n'), what);
  const lines = out.slice(0, -1).split('\n');
  assert.ok(!out.includes('zz'), `${what}: adversarial text in the output`);
  if (mode === 'iptables') {
    checkRestore(lines, what);
    return;
  }
  const heads = lines.map((l, i) => [l, i] as const).filter(([l]) => l.startsWith('#'));
  assert.deepEqual(
    heads.map(([l]) => l),
    ['# ipvsadm -Sn', '# ipset save', what.includes('ipv6') ? '# ip6tables-save' : '# iptables-save'],
    what,
  );
  const [, ipset] = heads[1]!;
  const [, restore] = heads[2]!;
  for (const l of lines.slice(1, ipset)) assert.match(l, IPVSADM_LINE, `${what}: ${JSON.stringify(l)}`);
  for (const l of lines.slice(ipset + 1, restore)) assert.match(l, IPSET_LINE, `${what}: ${JSON.stringify(l)}`);
  checkRestore(lines.slice(restore + 1), what);
}

test("adversarial names: rejected with one-line diagnostics; every mode prints only the valid objects' rules, line by line in kpx's grammar", async () => {
  const clean = join(tmp, 'clean');
  const dirty = join(tmp, 'dirty');
  mkdirSync(clean);
  mkdirSync(dirty);
  writeFileSync(join(clean, 'valid.yaml'), VALID);
  writeFileSync(join(dirty, 'valid.yaml'), VALID);
  writeFileSync(
    join(dirty, 'evil.json'),
    JSON.stringify({ apiVersion: 'v1', kind: 'List', items: adversarialObjects() }),
  );
  for (const mode of ['iptables', 'ipvs']) {
    for (const family of ['ipv4', 'ipv6']) {
      for (const format of ['full', 'chains']) {
        const args = ['--node', 'n1', '--mode', mode, '--ip-family', family, '--format', format];
        const what = `${mode} ${family} ${format}`;
        const a = await runKpx('render', '--manifests', clean, ...args);
        const b = await runKpx('render', '--manifests', dirty, ...args);
        assert.equal(a.code, 0, a.err);
        assert.equal(b.code, 0, b.err);
        assert.equal(a.err, '', what);
        checkOutput(b.out, mode, what);
        assert.equal(
          b.out,
          a.out,
          `${what}: the valid objects' rules are byte-identical with the adversarial ones beside them`,
        );
        // Every diagnostic is one line, and names the object and field.
        const diags = b.err.slice(0, -1).split('\n');
        for (const d of diags)
          assert.match(
            d,
            /^(error|warning): (Service|EndpointSlice|Node) .+ \(.*evil\.json#items\[\d+\]\) [a-zA-Z.[\]"0-9/-]+: /,
            d,
          );
        // Every adversarial object is rejected (counted by object: a slice may have two bad fields).
        const rejected = (kind: string): number =>
          new Set(diags.filter((d) => d.startsWith(`error: ${kind} `)).map((d) => /#items\[\d+\]/.exec(d)?.[0])).size;
        assert.equal(rejected('Service'), EVIL.length * 4 + 3, what);
        assert.equal(rejected('EndpointSlice'), EVIL.length, what);
        assert.equal(rejected('Node'), EVIL.length, what);
      }
    }
  }
});
