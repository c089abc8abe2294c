import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadConfig } from '../../lib/config/load.js';
import { cmd } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';
import { buildApiscpTree, snapshotTree, type TreeInfo } from '../../lib/demo/apiscp-tree.js';
import { startMariadb, type MariadbServer } from '../../lib/throwaway/mariadb.js';
import { cli, NODE, readStatus, REPO, rmrf } from '../helpers/e2e.js';

// hooks.before_dumps / after_dumps / after_backup / on_failure through the built CLI, and the
// zx example scripts in hooks/ run for real: the rsync method restores ACLs and xattrs intact.

const base = mkdtempSync(join(tmpdir(), 'user-hooks-'));
chmodSync(base, 0o755);
const root = join(base, 'root');
const SH = '/bin/sh';
let my: MariadbServer;
let tree: TreeInfo;
let n = 0;

beforeAll(async () => {
  my = await startMariadb();
  await my.sql('CREATE DATABASE site1_blog; CREATE TABLE site1_blog.p (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO site1_blog.p VALUES (1);');
  tree = await buildApiscpTree(root, { sites: 2 });
});
afterAll(async () => {
  await my?.destroy();
  rmrf(base);
});

/** A config for engine `engine` under the shared root with these hooks; returns its file. */
function config(hooks: Record<string, unknown>, extra: Record<string, unknown> = {}): string {
  const file = join(base, `config-${++n}.yaml`);
  writeFileSync(file, JSON.stringify({
    engine: 'none',
    paths: { root },
    panel: { enabled: false },
    databases: { mysql: { enabled: true, socket: my.socket, defaults_file: join(root, 'no-my.cnf') }, postgresql: { enabled: false } },
    // A status file per config: every test reads its own run.
    monitor: { status_file: `/var/lib/apiscp-backup/status-${n}.json` },
    hooks,
    ...extra,
  }));
  return file;
}
const status = (file: string): Record<string, any> => readStatus(loadConfig({ file }));
/** A hook that writes its APISCP_BACKUP_* environment to `out` (our runner has no shell: the admin's sh). */
const envTo = (out: string): string[] => [SH, '-c', 'env | grep ^APISCP_BACKUP_ | sort > "$0"; printf "%s" "$APISCP_BACKUP_SOURCES" > "$0.sources"', out];
const readEnv = (file: string): Record<string, string> =>
  Object.fromEntries(readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));

describe('user hooks', () => {
  test('order and facts: before_dumps, after_dumps (the run dir is complete), after_backup; silent on success', async () => {
    const trace = join(base, 'trace');
    const step = (name: string): string[] => [SH, '-c', 'echo "$0 $APISCP_BACKUP_HOOK ${APISCP_BACKUP_RUN_ID:-none}" >> "$1"; [ -z "$APISCP_BACKUP_RUN_DIR" ] || test -f "$APISCP_BACKUP_RUN_DIR/manifest.json"', name, trace];
    const file = config({ before_dumps: [step('b')], after_dumps: [step('d'), envTo(join(base, 'env-after-dumps'))], after_backup: [step('a')] });
    const r = await cli(['--config', file, 'run']);
    expect([r.code, r.stdout + r.stderr]).toEqual([0, '']);
    const runId = status(file).runId as string;
    expect(readFileSync(trace, 'utf8').trim().split('\n')).toEqual(['b before_dumps none', `d after_dumps ${runId}`, `a after_backup ${runId}`]);
    const env = readEnv(join(base, 'env-after-dumps'));
    expect(env).toMatchObject({ APISCP_BACKUP_HOOK: 'after_dumps', APISCP_BACKUP_ENGINE: 'none', APISCP_BACKUP_TRIGGER: 'run', APISCP_BACKUP_CONFIG: file, APISCP_BACKUP_RUN_ID: runId });
    expect(env.APISCP_BACKUP_RUN_DIR).toBe(join(root, 'var/backup/apiscp-backup', runId));
    // Expanded like `apiscp-backup paths`: siteN only, the dumps dir too.
    const sources = readFileSync(join(base, 'env-after-dumps.sources'), 'utf8');
    expect(sources.split('\n')).toEqual(expect.arrayContaining([join(root, 'home/virtual/site1/shadow'), join(root, 'var/backup/apiscp-backup')]));
    expect(sources).not.toMatch(/home\/virtual\/[a-z]+\.test/);
  });

  test('before_dumps failing fails the run before anything is dumped; on_failure hears why', async () => {
    const before = readdirSync(join(root, 'var/backup/apiscp-backup')).length;
    const out = join(base, 'env-on-failure');
    const file = config({ before_dumps: [['/bin/false']], on_failure: [envTo(out)] });
    const r = await cli(['--config', file, 'run']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/hooks\.before_dumps failed: \/bin\/false: exited with 1/);
    expect(readdirSync(join(root, 'var/backup/apiscp-backup')).length).toBe(before);
    expect(status(file)).toMatchObject({ status: 'failed', backup: { status: 'skipped' } });
    expect(readEnv(out)).toMatchObject({ APISCP_BACKUP_HOOK: 'on_failure', APISCP_BACKUP_STATUS: 'failed' });
    expect(readEnv(out).APISCP_BACKUP_ERROR).toMatch(/hooks\.before_dumps failed/);
  });

  test('after_dumps failing: no backup (exit 1); hooks.command_timeout stops a hung command', async () => {
    const failing = config({ after_dumps: [['/bin/sh', '-c', 'echo "no space on the vault" >&2; exit 3']] });
    const r = await cli(['--config', failing, 'run']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/hooks\.after_dumps failed: .*exited with 3: no space on the vault/s);
    expect(status(failing)).toMatchObject({ status: 'failed', backup: { status: 'skipped' }, dumps: { failed: 0 } });

    const hung = config({ before_dumps: [['/bin/sleep', '60']], command_timeout: '1s' });
    const started = Date.now();
    const t = await cli(['--config', hung, 'run']);
    expect(t.code).toBe(1);
    expect(t.stderr).toMatch(/hooks\.before_dumps failed: \/bin\/sleep 60 took longer than hooks\.command_timeout 1s/);
    expect(Date.now() - started).toBeLessThan(20_000);
  });

  test('after_backup failing is a warning: exit 0, status warning, the message printed for cron', async () => {
    const file = config({ after_backup: [['/bin/false']] });
    const r = await cli(['--config', file, 'run']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^apiscp-backup finished with warnings/);
    expect(r.stderr).toMatch(/hooks\.after_backup failed: \/bin\/false: exited with 1/);
    expect(status(file)).toMatchObject({ status: 'warning', warnings: [{ code: 'hook-failed', message: expect.stringMatching(/^hooks\.after_backup failed/) }] });
  });

  test('a hook needs at least a program: config validation names the key', async () => {
    const file = config({ after_backup: [[]] });
    const r = await cli(['config', 'validate', file]);
    expect(r.code).toBe(2);
    expect(r.stderr + r.stdout).toMatch(/hooks\.after_backup/);
  });
});

describe('the zx example scripts in hooks/', () => {
  const hook = (name: string): string => join(REPO, 'dist/hooks', name);

  test('rsync method (rsync -aAXH --numeric-ids): restores with ACLs, xattrs, whiteouts and owners intact', async () => {
    const target = join(base, 'rsync-target');
    mkdirSync(target);
    const file = config({ after_backup: [[NODE, hook('rsync-method.js'), target + '/']] });
    const r = await cli(['--config', file, 'run']);
    expect([r.code, r.stderr]).toEqual([0, '']);
    // Restore as the admin would: rsync back with the same flags.
    const restored = join(base, 'rsync-restore');
    await run(cmd('rsync', ['-aAXH', '--numeric-ids', `${target}/`, `${restored}/`]));
    const back = join(restored, root);
    expect(Object.fromEntries(await snapshotTree(back, tree.included))).toEqual(Object.fromEntries(await snapshotTree(root, tree.included)));
    for (const never of tree.excluded) expect(existsSync(join(back, never)), never).toBe(false);
    const runId = status(file).runId as string;
    expect(existsSync(join(back, 'var/backup/apiscp-backup', runId, 'manifest.json'))).toBe(true);
  });

  test('dumps hand-off (JetBackup or any dumps-only tool): the tool gets the list once the run is complete', async () => {
    const archive = join(base, 'handoff.tar');
    const file = config({ after_backup: [[NODE, hook('dumps-handoff.js'), '--', 'tar', '--acls', '--xattrs', '--xattrs-include=*', '-cPf', archive, '-T', '{list}']] });
    const r = await cli(['--config', file, 'run']);
    expect([r.code, r.stderr]).toEqual([0, '']);
    const listing = (await run(cmd('tar', ['-tPf', archive]))).stdout;
    const runId = status(file).runId as string;
    expect(listing).toContain(join(root, 'var/backup/apiscp-backup', runId, 'manifest.json'));
    expect(listing).toContain(join(root, 'home/virtual/site1/shadow/'));
    expect(existsSync(join(root, 'var/backup/apiscp-backup/.handoff.list'))).toBe(false);
  });

  test('the Duplicity wrapper in zx: gated on the dumps, records the outcome', async () => {
    const file = config({}, { engine: 'duplicity' });
    const target = join(base, 'dup-target');
    const env = {
      PATH: process.env.PATH!, HOME: base, APISCP_BACKUP_CONFIG: file,
      DUPLICITY_TARGET: `file://${target}`, DUPLICITY_ARCHIVE_DIR: join(base, 'dup-cache'),
    };
    const r = await cli([], { file: hook('duplicity-wrapper.zx.js'), env });
    expect(r.code, r.stderr).toBe(0);
    expect(status(file)).toMatchObject({ status: 'ok', engine: 'duplicity', backup: { status: 'ok' } });
    const files = (await run(cmd('duplicity', ['list-current-files', '--no-encryption', '--archive-dir', join(base, 'dup-cache'), '--name', 'apiscp', `file://${target}`]))).stdout;
    expect(files).toContain(relative('/', join(root, 'home/virtual/site1/shadow')));

    // Dumps failing (MariaDB down): no duplicity run at all, exit 1.
    await my.stop();
    try {
      const bad = await cli([], { file: hook('duplicity-wrapper.zx.js'), env: { ...env, DUPLICITY_TARGET: `file://${target}-never` } });
      expect(bad.code).toBe(1);
      expect(existsSync(`${target}-never`)).toBe(false);
    } finally {
      await my.start();
    }
  });

  test('zx stays out of the CLI: nothing the entry points import (statically or on demand) imports zx', () => {
    const seen = new Set<string>();
    const importsZx: string[] = [];
    const walk = (file: string): void => {
      if (seen.has(file)) return;
      seen.add(file);
      const text = readFileSync(file, 'utf8');
      if (/from\s+['"]zx['"]|import\(\s*['"]zx['"]\s*\)|require\(\s*['"]zx['"]\s*\)/.test(text)) importsZx.push(relative(REPO, file));
      for (const m of text.matchAll(/(?:from\s+|import\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g)) walk(join(dirname(file), m[1]!));
    };
    for (const entry of ['scripts/apiscp-backup.js', 'cron.daily/apiscp-backup.js', 'hooks/pre-backup.js', 'hooks/post-backup.js']) walk(join(REPO, 'dist', entry));
    // The entry points load the CLI as one bundle (lib/cli/bundled.ts): its chunks, and what esbuild put into them.
    expect([...seen].map((f) => relative(REPO, f))).toContain('dist/lib/cli/bundled.js');
    walk(join(REPO, 'dist/bundle/cli/main.js'));
    const bundled = Object.keys((JSON.parse(readFileSync(join(REPO, 'dist/bundle/meta.json'), 'utf8')) as { inputs: Record<string, unknown> }).inputs);
    expect(bundled.filter((f) => f.startsWith('dist/lib/')).length).toBeGreaterThan(50); // every command module
    expect(bundled.filter((f) => /node_modules\/(commander|execa|zod)\//.test(f)).length).toBeGreaterThan(3);
    expect(bundled.filter((f) => /node_modules\/zx\//.test(f))).toEqual([]);
    expect(importsZx).toEqual([]);
    // …and the example scripts do use it: the dependency is not dead.
    for (const s of ['rsync-method.js', 'dumps-handoff.js', 'duplicity-wrapper.zx.js']) expect(readFileSync(hook(s), 'utf8')).toMatch(/from ['"]zx['"]/);
  });
});
