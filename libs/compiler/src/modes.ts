// The proxy modes FamilyStates can compile. Adding a mode: a folder with its compiler and a `<mode>/mode.ts`
// implementing ModeCompiler, and one line here. Node duties that are the same in every mode (the per-service health
// check) are added to every mode here, not by each mode.
import { IptablesMode } from './iptables/compile.js';
import { iptablesMode } from './iptables/mode.js';
import type { IptablesOptions } from './iptables/options.js';
import { IpvsMode } from './ipvs/compile.js';
import { ipvsMode } from './ipvs/mode.js';
import type { IpvsOptions } from './ipvs/options.js';
import { withHealthChecks } from './healthcheck.js';
import type { AnyModeCompiler } from './mode.js';

/** Options every mode takes (a mode reads what it needs of them). */
export type ModeOptions = IptablesOptions | IpvsOptions;

const modes: ReadonlyMap<string, (options: ModeOptions) => AnyModeCompiler> = new Map([
  [IptablesMode, iptablesMode],
  [IpvsMode, ipvsMode],
]);

/** The compiler of a mode; iptables for a name no mode is registered under. */
export function modeCompiler(mode: string, options: ModeOptions): AnyModeCompiler {
  const compiler = (modes.get(mode) ?? iptablesMode)(options);
  return { mode: compiler.mode, open: (use) => compiler.open((c) => use(withHealthChecks(c))) };
}
