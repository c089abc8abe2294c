#!/usr/bin/env node
// hooks/duplicity-wrapper.sh in zx, for admins who keep their own duplicity run: dump right
// before the backup, no backup at all when the dumps failed (duply would back up anyway), back up
// exactly what `apiscp-backup paths` lists, and record the outcome (post-backup) whatever happens.
// Settings (environment): APISCP_BACKUP (dist/scripts/apiscp-backup.js, default: this package's),
// APISCP_BACKUP_CONFIG, DUPLICITY_TARGET, DUPLICITY_ARCHIVE_DIR, DUPLICITY_NAME,
// PASSPHRASE_FILE (exported as PASSPHRASE, never argv), DUPLICITY_ARGS (split on spaces).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { $ } from 'zx';

const env = process.env;
const cli = env.APISCP_BACKUP ?? fileURLToPath(new URL('../scripts/apiscp-backup.js', import.meta.url));
const config = env.APISCP_BACKUP_CONFIG ?? '/etc/apiscp-backup/config.yaml';
const target = env.DUPLICITY_TARGET ?? 'file:///backup/duplicity';
const ab = (...args: string[]) => $`${process.execPath} ${cli} --config ${config} ${args}`.nothrow();
const lines = (text: string): string[] => text.split('\n').filter((l) => l.startsWith('/'));

const pre = await ab('hook', 'pre-backup', '--engine', 'duplicity');
if (pre.exitCode !== 0) {
  process.stderr.write(pre.stderr);
  process.exit(1);
}

let status = 1;
const dir = mkdtempSync(join(tmpdir(), 'duplicity-wrapper-'));
try {
  // `paths` failing (bad config, unreadable home) must not become a backup of nothing.
  const [excludes, sources] = await Promise.all([ab('paths', '--exclude'), ab('paths')]);
  if (excludes.exitCode !== 0 || sources.exitCode !== 0 || lines(sources.stdout).length === 0) throw new Error(`apiscp-backup paths failed: ${sources.stderr}${excludes.stderr}`);
  // duplicity filelist: first match wins, so the excludes go first.
  const list = join(dir, 'filelist');
  writeFileSync(list, [...lines(excludes.stdout).map((p) => `- ${p}`), ...lines(sources.stdout).map((p) => `+ ${p}`), '- **'].join('\n') + '\n');
  const passphrase = env.PASSPHRASE_FILE ? readFileSync(env.PASSPHRASE_FILE, 'utf8').replace(/\n$/, '') : env.PASSPHRASE;
  const encryption = passphrase ? [] : ['--no-encryption'];
  const extra = (env.DUPLICITY_ARGS ?? '').split(' ').filter(Boolean);
  const archive = env.DUPLICITY_ARCHIVE_DIR ?? '/var/cache/duplicity';
  const name = env.DUPLICITY_NAME ?? 'apiscp';
  const run = await $({ env: { ...env, ...(passphrase ? { PASSPHRASE: passphrase } : {}) } })`duplicity ${extra} ${encryption} --archive-dir ${archive} --name ${name} --include-filelist ${list} / ${target}`.nothrow();
  if (run.exitCode !== 0) process.stderr.write(run.stderr);
  status = run.exitCode ?? 1;
} catch (err) {
  process.stderr.write(`duplicity-wrapper: ${(err as Error).message}\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
  const post = await ab('hook', 'post-backup', '--engine', 'duplicity', '--status', String(status));
  if (post.exitCode !== 0) process.stderr.write(post.stderr);
}
process.exit(status);
