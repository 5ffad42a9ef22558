#!/usr/bin/env node
// The import rules of the tree that neither tsc nor ESLint checks (part of `npm run lint`):
//   layering   a package depends (package.json "dependencies") on, and imports in src/, only packages of a lower
//              layer, and of its own side or a shared one (table below); src/ imports only what it declares
//   internals  no package imports another's files: `@kpx/x/...`, or a relative path out of its own directory
//   cycles     no import cycle among the tree's own files, type-only imports, re-exports, dynamic imports and
//              imports across packages (`@kpx/x` is its src/index.ts) included
// Tests, test/, bench/ and devDependencies may use any package; they are checked for internals and cycles.
// Exit status 1 with one line per problem. `node scripts/check-layers.mjs --layers` prints the table.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const Controller = 'controller';
const Node = 'node';
const Shared = 'shared';
const Both = 'both';

/**
 * Every package's layer and side. A package depends only on packages of a lower layer. The controller side
 * compiles rules, the node side applies them: neither depends on the other's packages (the node never links the
 * compiler); shared packages depend on shared ones only; the kpx command runs both. A new package gets a line.
 */
export const Packages = {
  '@kpx/common': { layer: 0, side: Shared, what: 'small helpers (queue, backoff, timestamps): no dependencies' },
  '@kpx/proto': { layer: 1, side: Shared, what: 'the wire contract (generated)' },
  '@kpx/telemetry': { layer: 1, side: Shared, what: 'logging, metrics, tracing, health' },
  '@kpx/testing': { layer: 1, side: Shared, what: 'test helpers (a devDependency of the others)' },
  '@kpx/model': { layer: 2, side: Shared, what: 'Kubernetes objects, service ports, endpoints, configuration' },
  '@kpx/compiler': { layer: 3, side: Controller, what: 'per-mode compilers: model -> rules' },
  '@kpx/ruleset': { layer: 3, side: Shared, what: 'rule state: keyed objects, digest, diff, apply' },
  '@kpx/node-states': { layer: 4, side: Controller, what: "every node's rules: shared base + overlays" },
  '@kpx/transport': { layer: 4, side: Shared, what: 'NATS JetStream deltas and snapshots, the NodeSync client' },
  '@kpx/kernel': { layer: 4, side: Node, what: 'appliers: iptables, IPVS, ipset, conntrack' },
  '@kpx/replay': { layer: 5, side: Shared, what: "a node's state at any retained generation" },
  '@kpx/controller': { layer: 6, side: Controller, what: 'the controller service' },
  '@kpx/executor': { layer: 6, side: Node, what: 'the executor service' },
  '@kpx/cli': { layer: 7, side: Both, what: 'the kpx command' },
};

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const rel = (p) => path.relative(root, p);

/** Why `from` may not depend on `to`; undefined when it may. */
export function layerProblem(from, to) {
  const a = Packages[from];
  const b = Packages[to];
  if (a === undefined || b === undefined)
    return `${a === undefined ? from : to} has no layer: add it to Packages in scripts/check-layers.mjs`;
  const why = [];
  if (b.layer >= a.layer) why.push(`${to} is layer ${b.layer}, not below ${from} (layer ${a.layer})`);
  if (b.side !== Shared && a.side !== Both && a.side !== b.side)
    why.push(
      `${to} is on the ${b.side} side, ${from} ${a.side === Shared ? 'is shared by both sides' : `on the ${a.side} side`}`,
    );
  return why.length > 0 ? why.join('; ') : undefined;
}

/** The workspace packages: name, directory, declared @kpx dependencies. */
function workspaces() {
  const top = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
  return top.workspaces.map((w) => {
    const dir = path.join(root, w);
    const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
    const kpx = (deps) => Object.keys(deps ?? {}).filter((d) => d.startsWith('@kpx/'));
    return {
      name: pkg.name,
      dir,
      deps: kpx({ ...pkg.dependencies, ...pkg.peerDependencies, ...pkg.optionalDependencies }),
      devDeps: kpx(pkg.devDependencies),
    };
  });
}

const Skip = new Set(['node_modules', 'dist', 'out', '.git']);
const SourceFile = /\.(ts|mts|mjs|js)$/;

function* walk(dir) {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (Skip.has(e.name)) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* walk(p);
    else if (SourceFile.test(e.name) && !e.name.endsWith('.d.ts')) yield p;
  }
}

/** The module specifiers of a file: imports, re-exports, dynamic imports, `import type` included. */
function specifiers(file) {
  return ts.preProcessFile(readFileSync(file, 'utf8'), true, true).importedFiles.map((f) => f.fileName);
}

function isFile(p) {
  return existsSync(p) && statSync(p).isFile();
}

/** The tree's file a relative specifier names (`./x.js` is `./x.ts` in the sources); undefined if none. */
function resolveRelative(file, spec) {
  const p = path.resolve(path.dirname(file), spec);
  const candidates = [p, p.replace(/\.js$/, '.ts'), p.replace(/\.mjs$/, '.mts'), `${p}.ts`, path.join(p, 'index.ts')];
  return candidates.find(isFile);
}

const inside = (dir, file) => file === dir || file.startsWith(`${dir}${path.sep}`);

export function check() {
  const problems = [];
  const packages = workspaces();
  const byName = new Map(packages.map((p) => [p.name, p]));
  for (const p of packages) {
    if (Packages[p.name] === undefined)
      problems.push(
        `${rel(path.join(p.dir, 'package.json'))}: ${p.name} has no layer: add it to Packages in scripts/check-layers.mjs`,
      );
    for (const d of p.deps) {
      const why = Packages[p.name] && layerProblem(p.name, d);
      if (why) problems.push(`${rel(path.join(p.dir, 'package.json'))}: ${p.name} depends on ${d}: ${why}`);
    }
  }

  // Every file of the tree, with the directory it must stay in (its package's, else its top-level directory's).
  const owners = new Map();
  for (const p of packages)
    for (const f of walk(p.dir)) owners.set(f, { dir: p.dir, pkg: p, src: inside(path.join(p.dir, 'src'), f) });
  for (const top of ['test', 'bench', 'scripts', 'tools'])
    for (const f of walk(path.join(root, top))) owners.set(f, { dir: path.join(root, top) });

  const edges = new Map();
  for (const [file, owner] of owners) {
    const out = [];
    for (const spec of specifiers(file)) {
      if (spec.startsWith('.')) {
        const target = resolveRelative(file, spec);
        if (!inside(owner.dir, path.resolve(path.dirname(file), spec))) {
          problems.push(
            `${rel(file)}: imports ${spec}, a file outside ${rel(owner.dir)}/: import the package by its name`,
          );
        }
        if (target) out.push(target);
        continue;
      }
      const m = /^(@kpx\/[^/]+)(\/.*)?$/.exec(spec);
      if (!m) continue;
      const [, name, deep] = m;
      if (deep)
        problems.push(
          `${rel(file)}: imports ${spec}, a file inside ${name}: import ${name} (what its src/index.ts exports)`,
        );
      const target = byName.get(name);
      if (target === undefined) continue;
      const index = path.join(target.dir, 'src', 'index.ts');
      if (isFile(index)) out.push(index);
      const pkg = owner.pkg;
      if (pkg === undefined || name === pkg.name) continue;
      // A declared dependency's layer is checked above, with its package.json.
      if (owner.src && !pkg.deps.includes(name)) {
        problems.push(
          `${rel(file)}: imports ${name}, which ${rel(path.join(pkg.dir, 'package.json'))} does not list in "dependencies"`,
        );
        const why = Packages[pkg.name] && layerProblem(pkg.name, name);
        if (why) problems.push(`${rel(file)}: imports ${name}: ${why}`);
      } else if (!owner.src && !pkg.deps.includes(name) && !pkg.devDeps.includes(name)) {
        problems.push(
          `${rel(file)}: imports ${name}, which ${rel(path.join(pkg.dir, 'package.json'))} does not list in "dependencies" or "devDependencies"`,
        );
      }
    }
    edges.set(file, out);
  }
  for (const cycle of cycles(edges)) problems.push(`import cycle: ${cycle.map(rel).join(' -> ')}`);
  return [...new Set(problems)];
}

/** One cycle through each strongly connected component of more than one file (or a file importing itself). */
function cycles(edges) {
  // Tarjan's algorithm, iterative: the tree is deep enough to matter for recursion.
  let counter = 0;
  const index = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const found = [];
  for (const start of edges.keys()) {
    if (index.has(start)) continue;
    const work = [{ v: start, i: 0 }];
    index.set(start, counter);
    low.set(start, counter++);
    stack.push(start);
    onStack.add(start);
    while (work.length > 0) {
      const top = work[work.length - 1];
      const next = (edges.get(top.v) ?? [])[top.i++];
      if (next !== undefined) {
        if (!index.has(next)) {
          index.set(next, counter);
          low.set(next, counter++);
          stack.push(next);
          onStack.add(next);
          work.push({ v: next, i: 0 });
        } else if (onStack.has(next)) low.set(top.v, Math.min(low.get(top.v), index.get(next)));
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1].v;
        low.set(parent, Math.min(low.get(parent), low.get(top.v)));
      }
      if (low.get(top.v) !== index.get(top.v)) continue;
      const scc = new Set();
      let w;
      do {
        w = stack.pop();
        onStack.delete(w);
        scc.add(w);
      } while (w !== top.v);
      if (scc.size > 1 || (edges.get(top.v) ?? []).includes(top.v)) found.push(shortestCycle(top.v, scc, edges));
    }
  }
  return found;
}

/** The shortest path from `v` back to itself inside `scc`, as the list of files (first repeated last). */
function shortestCycle(v, scc, edges) {
  const prev = new Map();
  const queue = [v];
  for (let q = 0; q < queue.length; q++) {
    const u = queue[q];
    for (const w of edges.get(u) ?? []) {
      if (!scc.has(w)) continue;
      if (w === v) {
        const route = [u];
        while (route[0] !== v) route.unshift(prev.get(route[0]));
        return [...route, v];
      }
      if (!prev.has(w)) {
        prev.set(w, u);
        queue.push(w);
      }
    }
  }
  return [v, v];
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--layers')) {
    for (const [name, p] of Object.entries(Packages).sort((a, b) => a[1].layer - b[1].layer))
      console.log(`${p.layer}  ${name.padEnd(18)} ${p.side.padEnd(10)} ${p.what}`);
  } else {
    const problems = check();
    for (const p of problems) console.error(`check-layers: ${p}`);
    process.exitCode = problems.length > 0 ? 1 : 0;
  }
}
