import { defineConfig } from 'vitest/config';

// Integration tests start real MariaDB, PostgreSQL and Bacula daemons: generous timeouts, and
// at most two test files at once on CI's two cores.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // `npm run build` once: CLI tests run the built dist/ as a subprocess.
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 180_000,
    hookTimeout: 240_000,
    reporters: ['default', './test/plain-summary-reporter.ts'],
  },
});
