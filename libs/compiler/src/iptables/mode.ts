// The iptables mode as the per-node sharing engine drives it: one part per service port, no units.
import { sealed, type AnyModeCompiler, type ModeCompiler } from '../mode.js';
import { sameWire } from '../wire.js';
import { IptablesMode, compileNodeBase, compileServicePort, portVariantKeyFn } from './compile.js';
import { makeContext, type CompileContext } from './context.js';
import type { IptablesOptions } from './options.js';

/** The iptables mode (the default). */
export function iptablesModeCompiler(options: IptablesOptions): ModeCompiler<CompileContext, never> {
  return {
    mode: IptablesMode,
    largeClusterMode: true,
    makeContext: (node, total) => makeContext(node, options, total),
    nodeBase: compileNodeBase,
    servicePortParts: (svc, endpoints) => [
      {
        name: '',
        keyFn: portVariantKeyFn(options, svc, endpoints),
        compile: (ctx) => compileServicePort(ctx, svc, endpoints),
      },
    ],
    units: undefined,
    same: sameWire,
  };
}

/** {@link iptablesModeCompiler}, sealed (the registry's entry). */
export const iptablesMode = (options: IptablesOptions): AnyModeCompiler => sealed(iptablesModeCompiler(options));
