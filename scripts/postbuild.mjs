// After tsc: bundle the CLI, then make the entry points executable (tsc keeps the shebang but not the mode).
import { build } from 'esbuild';
import { chmodSync, existsSync, rmSync, writeFileSync } from 'node:fs';

// The CLI as one bundle (its commands stay lazy chunks): Node's ESM loader resolved, read and
// compiled ~250 files before a dump could start, ~170 ms of every cron run, hook and `status`
// (bench's 40 databases: the first dump at 0.42 s, 0.25 s bundled, 2026-12-04). Its chunks sit
// at the depth of dist/lib/<dir>/, so every `new URL('../../../…', import.meta.url)` in lib/
// (package.json, the sandbox, the scripts) points where it does unbundled. dist/lib stays for
// the hooks' own imports, the bench and the tests.
rmSync('dist/bundle', { recursive: true, force: true });
const { metafile } = await build({
  entryPoints: ['dist/lib/cli/main.js'],
  outdir: 'dist/bundle/cli',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  logLevel: 'warning',
  metafile: true,
  // The CommonJS dependencies (mariadb, proper-lockfile…) call require(), which ESM lacks.
  banner: { js: "import { createRequire as __bundleRequire } from 'node:module'; const require = __bundleRequire(import.meta.url);" },
});
// What went into it (the tests check that zx, a hook-scripts-only dependency, did not).
writeFileSync('dist/bundle/meta.json', JSON.stringify(metafile));

for (const f of ['dist/scripts/apiscp-backup.js', 'dist/cron.daily/apiscp-backup.js', 'dist/hooks/pre-backup.js', 'dist/hooks/post-backup.js', 'dist/hooks/rsync-method.js', 'dist/hooks/dumps-handoff.js', 'dist/hooks/duplicity-wrapper.zx.js']) {
  if (existsSync(f)) chmodSync(f, 0o755);
}
