import { defineConfig } from 'vitest/config';

// `npm run test:unit`: the tests that need neither a build nor a database server, in seconds.
// `npm test` runs them too, with everything else.
export default defineConfig({
  test: {
    include: [
      'test/config/config.test.ts',
      'test/kinds/mysql/load/lexer.test.ts',
      'test/kinds/mysql/load/lexer-diff.test.ts',
      'test/kinds/postgresql/script.test.ts',
      'test/report/report.test.ts',
      'test/dumps/retention-pins.test.ts',
      'test/report/run-state.test.ts',
      'test/verify/select.test.ts',
      'test/fleet/verdict.test.ts',
      'test/job/pins.test.ts',
      'test/dumps/run-directory.test.ts',
      'test/engine/bacula-restore-log.test.ts',
      'test/engine/engine-progress.test.ts',
      'test/engine/duplicity-manifest.test.ts',
      'test/engine/restic-restoring.test.ts',
      'test/restore/count-staged.test.ts',
      // lib/proc's primitives: real processes (sh, sleep, gzip), no server, no build.
      'test/proc/**/*.test.ts',
    ],
    // A limit on correctness tests, not a speed check: the lexer's big-corpus tests take ~4–5 s on a loaded 2-core machine.
    testTimeout: 60_000,
    pool: 'forks',
    reporters: ['default'],
  },
});
