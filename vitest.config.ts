import { defineConfig } from 'vitest/config';

// Integration tests start real MariaDB, PostgreSQL and Bacula daemons: generous timeouts, and
// at most two test files at once on CI's two cores.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 180_000,
    hookTimeout: 240_000,
    reporters: ['default'],
  },
});
