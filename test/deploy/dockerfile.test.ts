// The Dockerfile's lint rules (hadolint's that matter here, plus kpx's own), and what can be checked of its
// build without a Docker engine: the build stage runs what CI runs, every workspace is installed and copied,
// the iptables wrapper picks the backend kube-proxy's would.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { lineage, parseDockerfile, type Stage } from './dockerfile.js';

const root = new URL('../../../', import.meta.url).pathname;
const { stages } = parseDockerfile(readFileSync(join(root, 'Dockerfile'), 'utf8'));
const stage = (name: string): Stage => {
  const s = stages.find((x) => x.name === name);
  assert.ok(s, `stage ${name}`);
  return s;
};
const workspaces = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { workspaces: string[] })
  .workspaces;
const all = stages.flatMap((s) => s.instructions.map((i) => ({ ...i, stage: s.name })));

test('base images are pinned by tag: no latest, no untagged image, Node 20 on Debian bookworm slim', () => {
  const external = stages.filter((s) => !stages.some((x) => x.name === s.from));
  assert.ok(external.length > 0);
  for (const s of external) {
    const m = /^([\w./-]+):([\w.-]+)(@sha256:[0-9a-f]{64})?$/.exec(s.from);
    assert.ok(m, `stage ${s.name}: FROM ${s.from} has no tag`);
    assert.notEqual(m[2], 'latest', `stage ${s.name}: FROM ${s.from}`);
    assert.match(
      m[2]!,
      /^20\.\d+\.\d+-bookworm-slim$/,
      `stage ${s.name}: a full Node 20 version on bookworm-slim, not a moving tag`,
    );
  }
});

test('apt-get: update and install in one RUN, -y --no-install-recommends, lists removed; no ADD; no sudo', () => {
  const runs = all.filter((i) => i.keyword === 'RUN');
  for (const r of runs.filter((x) => /apt-get install/.test(x.args))) {
    assert.match(r.args, /apt-get update/, `line ${r.line}: update in the same RUN as install`);
    assert.match(r.args, /apt-get install -y --no-install-recommends /, `line ${r.line}`);
    assert.match(r.args, /rm -rf \/var\/lib\/apt\/lists\/\*/, `line ${r.line}: apt lists removed`);
  }
  assert.ok(runs.every((r) => !/\bsudo\b|apt-get upgrade|dist-upgrade/.test(r.args)));
  assert.deepEqual(
    all.filter((i) => i.keyword === 'ADD'),
    [],
    'COPY, not ADD',
  );
  assert.ok(all.filter((i) => i.keyword === 'COPY').every((c) => !/https?:\/\//.test(c.args)));
});

test('the controller runs as a non-root user, both images have a HEALTHCHECK, tini as PID 1, OCI labels', () => {
  const controllerUser = lineage(stages, 'controller')
    .flatMap((s) => s.instructions)
    .filter((i) => i.keyword === 'USER');
  assert.ok(controllerUser.length > 0, 'USER set for the controller');
  assert.ok(!/^(root|0)(:|$)/.test(controllerUser[0]!.args), `controller USER ${controllerUser[0]!.args}`);
  for (const name of ['controller', 'executor']) {
    const own = stage(name).instructions;
    assert.ok(
      own.some((i) => i.keyword === 'HEALTHCHECK' && /CMD/.test(i.args)),
      `${name}: HEALTHCHECK`,
    );
    const entry = own.find((i) => i.keyword === 'ENTRYPOINT');
    assert.match(entry?.args ?? '', /^\["\/usr\/bin\/tini", "--"/, `${name}: tini is PID 1`);
    const labels = lineage(stages, name)
      .flatMap((s) => s.instructions)
      .filter((i) => i.keyword === 'LABEL')
      .map((i) => i.args)
      .join(' ');
    for (const l of ['title', 'version', 'revision', 'licenses', 'description'])
      assert.match(labels, new RegExp(`org\\.opencontainers\\.image\\.${l}=`), `${name}: OCI label ${l}`);
  }
  const exec = stage('executor').instructions.find((i) => /apt-get install/.test(i.args));
  for (const pkg of ['iptables', 'nftables', 'ipset', 'conntrack', 'ipvsadm'])
    assert.match(exec?.args ?? '', new RegExp(`\\b${pkg}\\b`), `executor: ${pkg}`);
});

test('the build stage runs what CI runs; the runtime installs production dependencies only and every workspace', () => {
  const build = stage('build')
    .instructions.filter((i) => i.keyword === 'RUN')
    .map((i) => i.args);
  assert.ok(build.includes('npm ci --no-audit --no-fund && npm run build'), `build: ${build.join(' | ')}`);
  assert.match(readFileSync(join(root, '.ci/run'), 'utf8'), /npm ci --no-audit --no-fund/, 'CI runs the same npm ci');
  const deps = stage('deps').instructions;
  assert.ok(
    deps.some((i) => i.keyword === 'RUN' && /npm ci --omit=dev/.test(i.args)),
    'npm ci --omit=dev',
  );
  const copied = deps.filter((i) => i.keyword === 'COPY').map((i) => i.args.split(/\s+/)[0]);
  const dists = stage('runtime')
    .instructions.filter((i) => i.keyword === 'COPY' && i.args.startsWith('--from=build'))
    .map((i) => i.args.split(/\s+/)[1]);
  for (const w of workspaces) {
    assert.ok(copied.includes(`${w}/package.json`), `deps stage copies ${w}/package.json`);
    assert.ok(dists.includes(`/src/${w}/dist`), `runtime copies ${w}/dist`);
  }
  // What the build context must hold (.dockerignore must not drop it).
  const ignore = readFileSync(join(root, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim());
  for (const c of all.filter((i) => i.keyword === 'COPY' && !i.args.startsWith('--from'))) {
    const srcs = c.args.split(/\s+/).slice(0, -1);
    for (const s of srcs) {
      assert.ok(existsSync(join(root, s)), `COPY ${s} (line ${c.line}) exists`);
      assert.ok(!ignore.includes(s) && !ignore.includes(s.split('/')[0]!), `${s} is not in .dockerignore`);
    }
  }
  assert.ok(ignore.includes('!deploy/image'), 'deploy/image stays in the context');
  assert.ok(
    existsSync(join(root, 'services/cli/dist/src/main.js')),
    'npm run build produced the CLI (CI builds before testing)',
  );
});

/** Runs the wrapper in dry-run mode with fake iptables-*-save / iptables-* binaries first on PATH. */
function wrapperChoice(
  fake: { legacyRules: number; nftRules: number; hint?: 'nft' | 'legacy' },
  env: Record<string, string> = {},
): string {
  const dir = mkdtempSync(join(tmpdir(), 'kpx-wrapper-'));
  try {
    const script = (body: string): string => `#!/bin/sh\n${body}\n`;
    for (const mode of ['legacy', 'nft'] as const) {
      const n = mode === 'legacy' ? fake.legacyRules : fake.nftRules;
      const save = script(
        `echo '*filter'; i=0; while [ $i -lt ${n} ]; do echo "-A INPUT -j ACCEPT"; i=$((i+1)); done; echo COMMIT`,
      );
      for (const fam of ['iptables', 'ip6tables']) {
        writeFileSync(join(dir, `${fam}-${mode}-save`), fam === 'iptables' ? save : script('echo COMMIT'));
        writeFileSync(join(dir, `${fam}-${mode}`), script(fake.hint === mode ? 'exit 0' : 'exit 1'));
        chmodSync(join(dir, `${fam}-${mode}-save`), 0o755);
        chmodSync(join(dir, `${fam}-${mode}`), 0o755);
      }
    }
    const r = spawnSync('sh', [join(root, 'deploy/image/iptables-wrapper.sh'), 'true'], {
      env: { PATH: `${dir}:/usr/bin:/bin`, IPTABLES_WRAPPER_DRY_RUN: '1', ...env },
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trim();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("iptables-wrapper: kubelet's hint first, else the backend with more rules, nft on a tie; an override wins", () => {
  assert.equal(wrapperChoice({ legacyRules: 10, nftRules: 2 }), 'legacy');
  assert.equal(wrapperChoice({ legacyRules: 2, nftRules: 10 }), 'nft');
  assert.equal(wrapperChoice({ legacyRules: 0, nftRules: 0 }), 'nft');
  assert.equal(wrapperChoice({ legacyRules: 10, nftRules: 0, hint: 'nft' }), 'nft');
  assert.equal(wrapperChoice({ legacyRules: 0, nftRules: 10, hint: 'legacy' }), 'legacy');
  assert.equal(wrapperChoice({ legacyRules: 0, nftRules: 10 }, { KPX_IPTABLES_MODE: 'legacy' }), 'legacy');
});

test('shell scripts pass shellcheck (when installed)', (t) => {
  const has = spawnSync('sh', ['-c', 'command -v shellcheck'], { encoding: 'utf8' }).status === 0;
  if (!has) return t.skip('shellcheck is not installed (apt-get install shellcheck)');
  execFileSync('shellcheck', [join(root, 'deploy/image/iptables-wrapper.sh')], { stdio: 'pipe' });
});
