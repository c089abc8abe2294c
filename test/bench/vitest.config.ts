import { defineConfig } from 'vitest/config';

// `npm run bench:fleet`: the fleet measurements behind docs/scaling.md. Not part of `npm test`
// (it takes minutes and loads both cores); same build step as the suite.
export default defineConfig({
  test: {
    include: ['test/bench/**/*.bench-test.ts'],
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    maxWorkers: 1,
    testTimeout: 900_000,
    hookTimeout: 300_000,
  },
});
