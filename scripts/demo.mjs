// Renders every node of a manifests directory (default: examples/) for both IP families and, when run as
// root, loads each rule set into its own temporary network namespace (never the root namespace).
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { IPFamily, formatDiagnostic, loadClusterState, readManifestDir } from '@kpx/model';
import { compileIptables, defaultIptablesOptions, renderRestore } from '@kpx/compiler';

const dir = process.argv[2] ?? 'examples';
const out = '.cache/render';
mkdirSync(out, { recursive: true });
const { state, diagnostics } = loadClusterState(await readManifestDir(dir));
for (const d of diagnostics) console.error(formatDiagnostic(d));
const root = process.getuid?.() === 0;
const ns = `kpx-demo-${process.pid}`;
if (root) execFileSync('ip', ['netns', 'add', ns]);
try {
  console.log(`kpx: compiled ${dir}/ for ${state.nodeNames().length} nodes\n`);
  console.log('node            family  chains  rules  file                                 kernel');
  for (const node of state.nodeNames()) {
    for (const family of [IPFamily.IPv4, IPFamily.IPv6]) {
      const rs = compileIptables({ state, nodeName: node, options: defaultIptablesOptions(family) });
      const text = renderRestore(rs);
      const file = `${out}/${node}.${family.toLowerCase()}.rules`;
      writeFileSync(file, text);
      const chains = rs.objects.filter((o) => o.kind === 'iptables.chain');
      const rules = chains.reduce((n, c) => n + c.rules.length, 0);
      let kernel = 'not loaded (run as root)';
      if (root) {
        execFileSync('ip', ['netns', 'exec', ns, family === IPFamily.IPv4 ? 'iptables-restore' : 'ip6tables-restore'], { input: text });
        kernel = 'loaded into a test namespace: ok';
      }
      console.log(`${node.padEnd(16)}${family.padEnd(8)}${String(chains.length).padStart(6)}${String(rules).padStart(7)}  ${file.padEnd(37)}${kernel}`);
    }
  }
  console.log(`\nReview one: node services/cli/bin/kpx.js render --manifests ${dir} --node ${state.nodeNames()[0] ?? 'NAME'}`);
} finally {
  if (root) execFileSync('ip', ['netns', 'del', ns]);
}
