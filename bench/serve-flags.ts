/** Node flags the benchmarks start the gateway with: the same as `npm start` (package.json). */
export const SERVE_NODE_FLAGS = ['--max-semi-space-size=64'];
