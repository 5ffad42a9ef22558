#!/usr/bin/env -S node --max-semi-space-size=64
// The flag (also for the controller of `npm start`, scripts/start.sh): compiling and rendering a large node
// allocates a few hundred MB that mostly survives; a 64 MB young generation (V8's default is 16) copies it far
// less often. It costs memory only where a process allocates that fast. See docs/benchmarks.md.
import { main } from '../dist/src/main.js';

process.exitCode = await main(process.argv.slice(2));
