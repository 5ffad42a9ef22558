// @kpx/cli: the kpx command, callable in-process (tests, tools).
export { main } from './main.js';
export type { Io } from './io.js';
