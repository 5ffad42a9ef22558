// kpx render: compile one node's rules from manifests, print them; diagnostics on stderr.
import { formatDiagnostic, loadClusterState, readManifests } from '@kpx/model';
import {
  IpvsMode,
  RestoreFormat,
  compileIptables,
  compileIpvs,
  iptablesOptionsFromConfig,
  ipvsOptionsFromConfig,
  renderIpvsRuleSet,
  writeRestore,
} from '@kpx/compiler';
import { UsageError } from './errors.js';
import { IpFamilyFlag, ipFamilyOf, parseFlags, required } from './flags.js';
import type { Io } from './io.js';
import { loadProxyConfig } from './proxy-config.js';

export const RENDER_USAGE = `usage: kpx render --manifests DIR --node NAME [--config FILE] [--mode iptables|ipvs] [--ip-family ipv4|ipv6] [--format full|chains]

Reads every *.yaml, *.yml and *.json file in DIR (multi-document YAML and kind: List too), compiles the
rules of node NAME as kube-proxy would, and prints them: in iptables mode as iptables-restore input (filter
and nat tables); in ipvs mode the virtual servers as \`ipvsadm -Sn\` prints them, then the ipsets as
\`ipset save\` prints them (\`ipset restore\` input), then the companion iptables rules as iptables-restore
input, each section headed by a "#" line.

  --manifests DIR    directory of Service, EndpointSlice and Node manifests
  --node NAME        the node to render (a Node object in DIR)
  --config FILE      KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1), YAML or JSON
  --mode MODE        proxy mode, iptables or ipvs; default: the config's mode, else iptables
  --ip-family F      ipv4 (iptables-restore input, default) or ipv6 (ip6tables-restore input)
  --format F         full: complete table image with builtin chains and jumps, loadable into an empty
                     namespace with plain iptables-restore (default); chains: only kpx's chains, as fed to
                     iptables-restore --noflush

Diagnostics go to stderr, each naming the file (and object, field); a file that cannot be read or parsed,
or an invalid object, is skipped and everything else is rendered. Exit status: 0 when rules were printed
(even if some files or objects were skipped), 1 when nothing could be rendered (unreadable directory,
unknown node, invalid config), 2 for a usage error.
`;

export async function renderCommand(argv: readonly string[], io: Io): Promise<number> {
  const values = parseFlags(
    argv,
    {
      manifests: { type: 'string' },
      node: { type: 'string' },
      config: { type: 'string' },
      mode: { type: 'string' },
      ...IpFamilyFlag,
      format: { type: 'string', default: RestoreFormat.Full },
    },
    RENDER_USAGE,
    io,
  );
  if (!values) return 0;
  const manifests = required(values.manifests, 'manifests', RENDER_USAGE);
  const nodeName = required(values.node, 'node', RENDER_USAGE);
  const family = ipFamilyOf(values['ip-family']);
  const format = values.format;
  if (format !== RestoreFormat.Full && format !== RestoreFormat.Chains)
    throw new UsageError(`--format must be full or chains, not ${JSON.stringify(format)}`);

  const { config, warnings } = await loadProxyConfig(values.config);
  for (const w of warnings) io.stderr(`warning: ${w}\n`);
  const mode = values.mode ?? config.mode;
  if (mode !== 'iptables' && mode !== IpvsMode) {
    io.stderr(`kpx: mode ${JSON.stringify(mode)} cannot be rendered yet: only iptables and ipvs are implemented\n`);
    return 1;
  }

  // The parsed manifests are not kept: once loaded they are garbage, and a large cluster's are hundreds of MB.
  const parsed = await readManifests(manifests);
  const { state, diagnostics } = loadClusterState(parsed.objects);
  for (const d of [...parsed.diagnostics, ...diagnostics]) io.stderr(`${formatDiagnostic(d)}\n`);
  if (mode === IpvsMode) {
    io.stdout(
      renderIpvsRuleSet(compileIpvs({ state, nodeName, options: ipvsOptionsFromConfig(config, family) }), format),
    );
    return 0;
  }
  const ruleSet = compileIptables({ state, nodeName, options: iptablesOptionsFromConfig(config, family) });
  // Chunk by chunk, each copied: writeRestore fills the same buffer again for the next one.
  writeRestore(ruleSet, format, (chunk) => io.stdout(Buffer.from(chunk)));
  return 0;
}
