// Entry point of the benchmarks (`npm run bench` = build, then this): runs each suite in its own process
// (node --expose-gc), one after the other, and exits 1 if any of them fails. Figures: docs/benchmarks.md.
//
//   node bench/run.mjs                        # every suite, each with its defaults (full size)
//   node bench/run.mjs render --services 2000 # one suite; the arguments after its name go to it
//   node bench/run.mjs --list
//
// A new suite is a bench/<name>.mjs script that prints its own table, writes bench/out/<name>-*.json and sets
// a non-zero exit status when a check fails; add it to SUITES (a suite whose file is missing is skipped).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));

/** Suites in run order: name -> script (in bench/) and what it measures. */
const SUITES = {
  render: { file: 'render.mjs', about: '`kpx render` of one node of a 10,000-service cluster (issue #2)' },
  parse: {
    file: 'parse.mjs',
    about: 'manifest parsers on one cluster as JSON and as YAML; kpx render from each (issue #13)',
  },
  controller: { file: 'controller.mjs', about: 'the controller pipeline at scale (issue #3)' },
  executor: { file: 'executor.mjs', about: 'executor apply and change-to-ack latency (issue #4)' },
  noflush: {
    file: 'noflush.mjs',
    about: 'iptables-restore with and without --noflush as chains grow (issue #4 full resync)',
  },
  replay: { file: 'replay.mjs', about: 'replaying 10,000 deltas for one node (issue #6)' },
  hash: { file: 'hash.mjs', about: 'the one object hasher and RuleState.apply with undo vs without (issue #14)' },
  ipvs: {
    file: 'ipvs.mjs',
    about: 'IPVS one-endpoint delta vs from scratch on a 5,000-service node, inside tools/ipvs-vm (issue #5)',
  },
};

function runSuite(name, args) {
  const script = join(HERE, SUITES[name].file);
  process.stdout.write(
    `\n=== bench ${name}: ${SUITES[name].about}\n=== node --expose-gc bench/${SUITES[name].file} ${args.join(' ')}\n`,
  );
  return new Promise((resolveRun) => {
    const child = spawn(process.execPath, ['--expose-gc', script, ...args], { stdio: 'inherit' });
    child.on('error', (err) => {
      process.stderr.write(`bench ${name}: ${err.message}\n`);
      resolveRun(1);
    });
    child.on('close', (code, signal) => resolveRun(code ?? (signal ? 1 : 0)));
  });
}

async function main(argv) {
  const available = Object.keys(SUITES).filter((n) => existsSync(join(HERE, SUITES[n].file)));
  if (argv[0] === '--list' || argv[0] === '--help' || argv[0] === '-h') {
    process.stdout.write(
      `usage: node bench/run.mjs [SUITE [ARGS...]]\n\nsuites:\n${available.map((n) => `  ${n.padEnd(11)} ${SUITES[n].about}`).join('\n')}\n`,
    );
    return 0;
  }
  if (argv.length > 0) {
    const [name, ...args] = argv;
    if (!available.includes(name)) {
      process.stderr.write(`unknown suite ${JSON.stringify(name)}: choose from ${available.join(', ')}\n`);
      return 2;
    }
    return runSuite(name, args);
  }
  const failed = [];
  for (const name of available) if ((await runSuite(name, [])) !== 0) failed.push(name);
  process.stdout.write(
    `\n=== bench: ${available.length - failed.length}/${available.length} suites passed${failed.length ? `; failed: ${failed.join(', ')}` : ''}\n`,
  );
  return failed.length ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
