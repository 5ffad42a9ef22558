// Benchmark of reading manifests (issue #13): the same synthetic cluster (bench/synth.mjs) as JSON `kind: List`
// files and as multi-document YAML files, parsed by each candidate parser, then the whole `kpx render` of one
// node from either, side by side. See docs/benchmarks.md.
//
//   npm run build
//   node --expose-gc bench/parse.mjs                        # 10,000 services × 10 endpoints, 3 reps
//   node --expose-gc bench/parse.mjs --services 2000 --reps 5 --only parsers
//
// Sections:
//   parsers  each parser on every file of the cluster, in-process, interleaved rep by rep: JSON.parse (JSON
//            files), js-yaml loadAll (YAML files, core schema), yaml parseAllDocuments + toJS (YAML files), and
//            kpx's own parseManifestText on both (JSON fast path; js-yaml plus the walk that checks cycles,
//            depth, alias expansion and merge keys).
//   render   `kpx render --manifests DIR --node node-000` spawned on the JSON directory and on the YAML one,
//            interleaved; wall time; the outputs must be byte-identical (exit status 1 otherwise), and the
//            YAML/JSON ratio of medians at most 1.5 (reported; exit status 1 when missed).
//
// Writes bench/out/parse-latest.json and parse-latest.md (the table for docs/benchmarks.md).
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import jsyaml from 'js-yaml';
import { parseAllDocuments } from 'yaml';
import * as model from '@kpx/model';
import { DEFAULTS, manifestObjects, nodeName, synthCluster, writeCluster } from './synth.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const KPX = join(ROOT, 'services/cli/bin/kpx.js');
const OUT = join(ROOT, 'bench/out');
const MAX_RATIO = 1.5;

const { values: args } = parseArgs({
  options: {
    services: { type: 'string', default: String(DEFAULTS.services) },
    endpoints: { type: 'string', default: String(DEFAULTS.endpoints) },
    reps: { type: 'string', default: '3' },
    'yaml-lib-reps': { type: 'string', default: '1' },
    only: { type: 'string', default: 'parsers,render' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (args.help) {
  process.stdout.write(
    'usage: node --expose-gc bench/parse.mjs [--services N] [--endpoints N] [--reps N] [--yaml-lib-reps N] [--only parsers,render]\n',
  );
  process.exit(0);
}
const only = new Set(args.only.split(','));
const reps = Number(args.reps);

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const stats = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs), samples: xs });
const ms = (x) => `${Math.round(x).toLocaleString('en-US')} ms`;
const mib = (b) => `${(b / 1048576).toFixed(1)} MiB`;
const gc = () => globalThis.gc?.();

async function writeYaml(objects, dir, chunks) {
  await mkdir(dir, { recursive: true });
  const size = Math.ceil(objects.length / chunks);
  const files = [];
  let bytes = 0;
  for (let i = 0; i * size < objects.length; i++) {
    const text = objects
      .slice(i * size, (i + 1) * size)
      .map((o) => jsyaml.dump(o, { lineWidth: -1, noRefs: true }))
      .join('---\n');
    const path = join(dir, `${String(i).padStart(2, '0')}-cluster.yaml`);
    await writeFile(path, text);
    files.push(path);
    bytes += Buffer.byteLength(text);
  }
  return { manifests: dir, files, bytes };
}

/**
 * Runs `node ...argv` under bash's `time` (TIMEFORMAT user and system seconds on the last stderr line): wall
 * time, and the CPU time of the process, which other tenants of a shared machine disturb much less.
 */
function run(argv) {
  return new Promise((resolveRun, reject) => {
    const started = process.hrtime.bigint();
    const script = 'TIMEFORMAT="kpx-cpu %3U %3S"; time "$@"';
    const child = spawn('/bin/bash', ['-c', script, 'bash', process.execPath, ...argv], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const hash = createHash('sha256');
    let stderr = '';
    child.stdout.on('data', (b) => hash.update(b));
    child.stderr.on('data', (b) => (stderr += b));
    child.on('error', reject);
    child.on('close', (code) => {
      const cpu = /kpx-cpu ([\d.]+) ([\d.]+)\n?$/.exec(stderr);
      resolveRun({
        code,
        ms: Number(process.hrtime.bigint() - started) / 1e6,
        cpuMs: cpu ? (Number(cpu[1]) + Number(cpu[2])) * 1000 : NaN,
        sha: hash.digest('hex').slice(0, 12),
        stderr: cpu ? stderr.slice(0, cpu.index) : stderr,
      });
    });
  });
}

async function main() {
  const services = Number(args.services);
  const cluster = synthCluster({ services, endpoints: Number(args.endpoints) });
  const dir = join(OUT, `parse-${services}x${args.endpoints}`);
  const json = await writeCluster(cluster, join(dir, 'json'));
  const yamlDir = await writeYaml(manifestObjects(cluster), join(dir, 'yaml', 'manifests'), DEFAULTS.chunks);
  const config = json.config;
  const node = nodeName(0, cluster.nodes.length);
  const texts = {
    json: await Promise.all(json.files.map((f) => readFile(f, 'utf8'))),
    yaml: await Promise.all(yamlDir.files.map((f) => readFile(f, 'utf8'))),
  };
  process.stdout.write(
    `cluster: ${services} services × ${args.endpoints} endpoints, ${manifestObjects(cluster).length} objects; JSON ${json.files.length} files ${mib(json.bytes)}, YAML ${yamlDir.files.length} files ${mib(yamlDir.bytes)}\n` +
      `machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}, node ${process.version}\n`,
  );
  const result = {
    at: new Date().toISOString(),
    services,
    endpoints: Number(args.endpoints),
    jsonBytes: json.bytes,
    yamlBytes: yamlDir.bytes,
    parsers: {},
    render: {},
  };
  const rows = [];
  let failed = false;

  if (only.has('parsers')) {
    const parsers = {
      'JSON.parse (JSON files)': () => texts.json.forEach((t) => JSON.parse(t)),
      'kpx parseManifestText (JSON files: fast path)': () =>
        texts.json.forEach((t, i) => model.parseManifestText(t, json.files[i])),
      'js-yaml loadAll, core schema (YAML files)': () =>
        texts.yaml.forEach((t) => jsyaml.loadAll(t, undefined, { schema: jsyaml.CORE_SCHEMA })),
      'kpx parseManifestText (YAML files: block-YAML reader, js-yaml when it gives up)': () =>
        texts.yaml.forEach((t, i) => model.parseManifestText(t, yamlDir.files[i])),
      'yaml parseAllDocuments + toJS (YAML files)': () =>
        texts.yaml.forEach((t) => parseAllDocuments(t).forEach((d) => d.toJS())),
    };
    const samples = Object.fromEntries(Object.keys(parsers).map((k) => [k, []]));
    for (let r = 0; r < reps; r++) {
      for (const [name, fn] of Object.entries(parsers)) {
        if (name.startsWith('yaml ') && r >= Number(args['yaml-lib-reps'])) continue;
        gc();
        const t0 = performance.now();
        fn();
        samples[name].push(performance.now() - t0);
      }
    }
    for (const [name, xs] of Object.entries(samples)) {
      result.parsers[name] = stats(xs);
      rows.push([`parse: ${name}`, xs]);
    }
    // The loader's answer is the same from either form.
    const a = texts.json.flatMap((t) => model.parseManifestText(t, 'f').objects.map((o) => o.object));
    const b = texts.yaml.flatMap((t) => model.parseManifestText(t, 'f').objects.map((o) => o.object));
    const same = JSON.stringify(a) === JSON.stringify(b);
    process.stdout.write(`objects from JSON and from YAML identical: ${same}\n`);
    if (!same) failed = true;
  }

  if (only.has('render')) {
    const samples = { json: [], yaml: [] };
    const cpu = { json: [], yaml: [] };
    const shas = new Set();
    const stderrs = new Set();
    for (let r = 0; r < reps; r++) {
      for (const form of ['json', 'yaml']) {
        const manifests = form === 'json' ? json.manifests : yamlDir.manifests;
        const res = await run([KPX, 'render', '--manifests', manifests, '--node', node, '--config', config]);
        if (res.code !== 0) {
          process.stdout.write(`kpx render (${form}) exited ${res.code}: ${res.stderr.slice(0, 500)}\n`);
          failed = true;
        }
        samples[form].push(res.ms);
        cpu[form].push(res.cpuMs);
        shas.add(res.sha);
        stderrs.add(res.stderr.replaceAll(manifests, 'DIR').replace(/\.(json|yaml)\b/g, '.EXT'));
      }
    }
    const ratio = median(samples.yaml) / median(samples.json);
    const cpuRatio = median(cpu.yaml) / median(cpu.json);
    result.render = {
      json: stats(samples.json),
      yaml: stats(samples.yaml),
      ratio,
      cpu: { json: stats(cpu.json), yaml: stats(cpu.yaml), ratio: cpuRatio },
      outputs: [...shas],
      diagnosticsAlike: stderrs.size === 1,
    };
    rows.push([`kpx render --node ${node}, JSON manifests (wall)`, samples.json]);
    rows.push([`kpx render --node ${node}, YAML manifests (wall)`, samples.yaml]);
    rows.push([`kpx render --node ${node}, JSON manifests (CPU, all threads)`, cpu.json]);
    rows.push([`kpx render --node ${node}, YAML manifests (CPU, all threads)`, cpu.yaml]);
    process.stdout.write(
      `outputs: ${[...shas].join(', ')} (${shas.size === 1 ? 'byte-identical' : 'DIFFERENT'}); diagnostics alike: ${stderrs.size === 1}\n`,
    );
    process.stdout.write(
      `YAML / JSON render time: ${ratio.toFixed(2)} wall, ${cpuRatio.toFixed(2)} CPU (at most ${MAX_RATIO})\n`,
    );
    if (shas.size !== 1 || ratio > MAX_RATIO) failed = true;
  }

  const table = [
    '| figure | median | min | max |',
    '| --- | ---: | ---: | ---: |',
    ...rows.map(([n, xs]) => `| ${n} | ${ms(median(xs))} | ${ms(Math.min(...xs))} | ${ms(Math.max(...xs))} |`),
  ].join('\n');
  process.stdout.write(`\n${table}\n`);
  await mkdir(OUT, { recursive: true });
  await writeFile(join(OUT, 'parse-latest.json'), `${JSON.stringify(result, null, 2)}\n`);
  await writeFile(join(OUT, 'parse-latest.md'), `${table}\n`);
  await readdir(OUT);
  process.exitCode = failed ? 1 : 0;
}

await main();
