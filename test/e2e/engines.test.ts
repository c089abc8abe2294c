import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadConfig } from '../../lib/config/load.js';
import type { EngineName } from '../../lib/engine/types.js';
import { cmd } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';
import { buildApiscpTree, snapshotTree } from '../../lib/demo/apiscp-tree.js';
import {
  cli, CLI, countBackups, engineRepository, type EngineSandbox, CRON_PATH, NODE, REPO, engineRestore, loadRun, MY_DBS, PG_DBS, readStatus, rmrf, stopServers, writeConfig, expectSameDatabases, seededServers,
} from '../helpers/e2e.js';
import type { Servers } from '../../lib/throwaway/servers.js';

// Every engine through the BUILT CLI: `apiscp-backup run` with real databases and a real
// repository, then a restore into an empty dir, compared file by file (content, mode, owner,
// ACLs, xattrs) and database by database (restored dumps loaded into fresh servers).

const SECRET = `pass phrase'"$(x)`;
const base = mkdtempSync(join(tmpdir(), 'e2e-engines-'));
// pg_restore runs as postgres (peer authentication) and must reach the scratch copies.
chmodSync(base, 0o755);
let servers: Servers;
/** Where restored dumps are loaded: never the servers they came from. */
let fresh: Servers;
let original: Record<string, Record<string, string>> = {};
const timings: Record<string, { runMs: number; restoreMs: number }> = {};

type Setup = EngineSandbox;
const setups = new Map<string, Setup>();

/** A temp root with an ApisCP tree, a repository with a secret in a file, and the config. */
async function setup(engine: EngineName, name: string = engine): Promise<Setup> {
  const dir = join(base, name);
  const root = join(dir, 'root');
  const tree = await buildApiscpTree(root, { sites: 2 });
  const extra = await engineRepository(engine, dir, SECRET);
  const config = writeConfig(join(dir, 'etc/config.yaml'), { root, servers, engine, extra });
  const s = { engine, dir, root, tree, config, loaded: loadConfig({ file: config }) };
  setups.set(name, s);
  return s;
}

beforeAll(async () => {
  ({ servers, fresh, original } = await seededServers());
});

afterAll(async () => {
  console.log('e2e engine timings (ms, CLI run incl. dumps / restore):', JSON.stringify(timings));
  await Promise.all([stopServers(servers), stopServers(fresh)]);
  rmrf(base);
});

/** Load the dumps of a restored dumps dir (through its `latest` manifest) and compare with the originals. */
async function expectDatabasesBack(restoredDumpsDir: string, label: string): Promise<void> {
  const runDir = join(restoredDumpsDir, 'latest');
  const loaded = await loadRun(runDir, fresh, `r_${label}_`);
  expect(loaded.manifest.status).toBe('complete');
  expect([...loaded.mysql.keys()].sort()).toEqual([...MY_DBS].sort());
  // The server's own `postgres` database is dumped too (empty here).
  expect([...loaded.postgresql.keys()].sort()).toEqual(['postgres', ...PG_DBS].sort());
  await expectSameDatabases(loaded, fresh, original, (a, e, what) => expect(a, what).toEqual(e));
  // users/globals exports travel too (restoring them is the admin's call).
  const objects = loaded.manifest.entries.map((e) => `${e.kind}:${e.object}`);
  expect(objects).toEqual(expect.arrayContaining(['mysql:users', 'postgresql:globals']));
}

describe.each(['duplicity', 'restic', 'borg'] as const)('%s through `apiscp-backup run`', (engine) => {
  test('backup, restore into an empty dir: the tree and the databases come back', async () => {
    const s = await setup(engine);
    const r = await cli(['--config', s.config, 'run', '--engine', engine]);
    expect(r.code, r.stderr).toBe(0);
    // Under cron a good run is silent.
    expect(r.stdout + r.stderr).toBe('');
    expect(await countBackups(s.loaded)).toBe(1);
    const status = readStatus(s.loaded);
    expect(status).toMatchObject({ status: 'ok', engine, trigger: 'run', backup: { status: 'ok' }, dumps: { failed: 0 } });
    const dumped = status.dumps.databases.map((d: { kind: string; database: string | null }) => `${d.kind}:${d.database ?? 'server'}`);
    expect(dumped).toEqual(expect.arrayContaining([...MY_DBS.map((d) => `mysql:${d}`), ...PG_DBS.map((d) => `postgresql:${d}`), 'mysql:server', 'postgresql:server']));

    const target = join(s.dir, 'restore');
    const t = Date.now();
    await engineRestore(s.config, target);
    if (engine === 'duplicity') {
      // duplicity drops ACLs and xattrs: the sidecar inside the restored dumps dir puts them back.
      const acls = await cli(['--config', s.config, 'restore', 'acls', '--from', target]);
      expect(acls.code, acls.stderr).toBe(0);
      expect(acls.stdout).toMatch(/re-applied ACLs to [1-9]\d* and xattrs to [1-9]\d* paths/);
    }
    timings[engine] = { runMs: r.ms, restoreMs: Date.now() - t };
    const restoredRoot = join(target, s.root);
    const before = await snapshotTree(s.root, s.tree.included);
    const after = await snapshotTree(restoredRoot, s.tree.included);
    expect(Object.fromEntries(after)).toEqual(Object.fromEntries(before));
    for (const never of s.tree.excluded) expect(existsSync(join(restoredRoot, never)), never).toBe(false);
    // A half-written run is never in a backup.
    expect(readdirSync(join(target, s.loaded.paths.dumpsDir)).filter((n) => n.endsWith('.inprogress'))).toEqual([]);
    await expectDatabasesBack(join(target, s.loaded.paths.dumpsDir), engine);
  });
});

describe('engine none (dumps only)', () => {
  test('run writes the dumps, no backup; status ok; the dumps load into fresh databases', async () => {
    const s = await setup('none');
    const r = await cli(['--config', s.config, 'run']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).toBe('');
    const status = readStatus(s.loaded);
    expect(status).toMatchObject({ status: 'ok', engine: 'none' });
    expect(status.backup).toBeUndefined();
    expect(status.lastSuccessAt).toBeTruthy();
    // No ACL sidecar: whatever copies the files must keep ACLs itself.
    expect(readdirSync(s.loaded.paths.dumpsDir).filter((n) => n.startsWith('fs-acls'))).toEqual([]);
    await expectDatabasesBack(s.loaded.paths.dumpsDir, 'none');
  });
});

const WRAPPER = join(REPO, 'hooks/duplicity-wrapper.sh');
const TWO_LINES = join(REPO, 'test/fixtures/duplicity-two-lines.sh');

/** Environment for the wrapper scripts: cron's PATH, no HOME, our settings. */
function wrapperEnv(s: Setup, extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: CRON_PATH, NODE, CLI, APISCP_BACKUP: CLI, APISCP_BACKUP_CONFIG: s.config, CONFIG: s.config, ...extra };
}

describe('duplicity wrapped by an admin script (hook pre-backup … hook post-backup)', () => {
  test('the two lines around a real duplicity: dumps first, the outcome recorded', async () => {
    const s = await setup('duplicity', 'two-lines');
    const src = join(s.root, 'home/virtual/site1/shadow');
    const target = join(s.dir, 'two-lines-target');
    const env = wrapperEnv(s, { SRC: src, TARGET: `file://${target}`, ARCHIVE: join(s.dir, 'cache'), MARKER: join(s.dir, 'ran') });
    const r = await cli([], { file: TWO_LINES, env });
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(join(s.dir, 'ran'))).toBe(true);
    expect(readdirSync(target).filter((n) => /^duplicity-full\..*\.manifest/.test(n))).toHaveLength(1);
    const st = readStatus(s.loaded);
    expect(st).toMatchObject({ status: 'ok', engine: 'duplicity', trigger: 'hook', backup: { status: 'ok', detail: '0' }, dumps: { failed: 0 } });
    // The dumps were written before duplicity read anything, and pre-backup left the ACL sidecar.
    expect(existsSync(join(s.loaded.paths.dumpsDir, 'latest/manifest.json'))).toBe(true);
    expect(readdirSync(s.loaded.paths.dumpsDir).some((n) => /^fs-acls\.(zst|gz)$/.test(n))).toBe(true);

    // duplicity failing (a backend it does not know) is recorded as a failed backup.
    const bad = await cli([], { file: TWO_LINES, env: { ...env, TARGET: 'bogus://nowhere' } });
    expect(bad.code).toBe(5);
    expect(readStatus(s.loaded)).toMatchObject({ status: 'failed', backup: { status: 'failed' } });
    expect(bad.stderr).toMatch(/backup \(duplicity\): failed/);
  });

  test('hooks/duplicity-wrapper.sh backs up exactly what `apiscp-backup paths` lists', async () => {
    const s = await setup('duplicity', 'wrapper');
    const target = join(s.dir, 'wrapper-target');
    // A run still being written must stay out, like with `run`.
    mkdirSync(join(s.loaded.paths.dumpsDir, '20260101T000000Z.inprogress'), { recursive: true });
    writeFileSync(join(s.loaded.paths.dumpsDir, '20260101T000000Z.inprogress/half.sql'), 'CREATE');
    const env = wrapperEnv(s, {
      DUPLICITY_TARGET: `file://${target}`, DUPLICITY_ARCHIVE_DIR: join(s.dir, 'cache'), PASSPHRASE_FILE: join(s.dir, 'secret'),
    });
    const r = await cli([], { file: WRAPPER, env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Errors 0/); // duplicity's own statistics
    expect(readStatus(s.loaded)).toMatchObject({ status: 'ok', backup: { status: 'ok' } });

    const restored = join(s.dir, 'restore');
    await run(cmd('duplicity', ['restore', '--archive-dir', join(s.dir, 'cache'), '--name', 'apiscp', `file://${target}`, restored], {
      env: { PASSPHRASE: SECRET },
    }));
    const acls = await cli(['--config', s.config, 'restore', 'acls', '--from', restored]);
    expect(acls.code, acls.stderr).toBe(0);
    const restoredRoot = join(restored, s.root);
    expect(Object.fromEntries(await snapshotTree(restoredRoot, s.tree.included))).toEqual(Object.fromEntries(await snapshotTree(s.root, s.tree.included)));
    for (const never of s.tree.excluded) expect(existsSync(join(restoredRoot, never)), never).toBe(false);
    // Top level of the restore = the listed sources and their parents, nothing else.
    const listed = (await cli(['--config', s.config, 'paths'])).stdout.trim().split('\n');
    const restoredFiles = (await run(cmd('find', [restoredRoot, '-mindepth', '1']))).stdout.trim().split('\n').map((p) => p.slice(restoredRoot.length));
    const outside = restoredFiles.filter((p) => !listed.some((l) => (s.root + p).startsWith(l) || l.startsWith(s.root + p + '/')));
    expect(outside).toEqual([]);
    expect(restoredFiles.filter((p) => p.includes('.inprogress'))).toEqual([]);
    await expectDatabasesBack(join(restored, s.loaded.paths.dumpsDir), 'wrapper');
  });
});

describe('nightly (the cron.daily entry) with duplicity, in a cron environment', () => {
  test('silent and exit 0 on success; the job really ran', async () => {
    const s = await setup('duplicity', 'nightly');
    const r = await cli(['--config', s.config, 'nightly'], { env: { PATH: CRON_PATH } });
    expect([r.code, r.stdout, r.stderr]).toEqual([0, '', '']);
    expect(await countBackups(s.loaded)).toBe(1);
    expect(readStatus(s.loaded)).toMatchObject({ status: 'ok', trigger: 'cron', backup: { status: 'ok' } });
  });
});

describe('a failing dump (MariaDB stopped)', () => {
  beforeAll(async () => {
    await servers.mariadb.stop();
  });
  afterAll(async () => {
    await servers.mariadb.start();
  });

  test.each(['duplicity', 'restic', 'borg'] as const)('%s: on_dump_failure fail → exit 1, no new backup; warn → backup made, exit 1', async (engine) => {
    const s = setups.get(engine) ?? (await setup(engine));
    const before = await countBackups(s.loaded);
    const r = await cli(['--config', s.config, 'run', '--engine', engine]);
    expect(r.code, r.stderr).toBe(1);
    expect(await countBackups(s.loaded)).toBe(before);
    expect(r.stderr).toMatch(/^apiscp-backup FAILED on .*: run, engine /);
    expect(r.stderr).toMatch(/^ {2}mysql /m);
    expect(r.stderr).toMatch(/backup \(\w+\): skipped/);
    expect(readStatus(s.loaded)).toMatchObject({ status: 'failed', backup: { status: 'skipped' } });
    // PostgreSQL still dumped: one broken server does not cost the other's dumps.
    expect(readStatus(s.loaded).dumps.databases.filter((d: { kind: string; status: string }) => d.kind === 'postgresql' && d.status === 'ok').length).toBeGreaterThan(0);

    const raw = JSON.parse(readFileSync(s.config, 'utf8')) as Record<string, unknown>;
    const warnConfig = join(s.dir, 'etc/warn.yaml');
    writeFileSync(warnConfig, JSON.stringify({ ...raw, on_dump_failure: 'warn' }));
    const w = await cli(['--config', warnConfig, 'run', '--engine', engine]);
    // The admin asked for the files anyway: the backup is made, but cron still hears about it.
    expect(w.code, w.stderr).toBe(1);
    expect(await countBackups(s.loaded)).toBe(before + 1);
    expect(w.stderr).toMatch(/^apiscp-backup finished with warnings on /);
    expect(w.stderr).toMatch(/^ {2}mysql /m);
    expect(w.stderr).toMatch(new RegExp(`backup \\(${engine}\\): (ok|warning)`));
    expect(w.stderr).toMatch(/on_dump_failure is warn: backed up anyway/);
    // Each failed dump is said once (not again under "problems").
    expect(w.stderr.match(/cannot connect/g)?.length).toBe(readStatus(s.loaded).dumps.failed);
    const st = readStatus(s.loaded);
    expect(st).toMatchObject({ status: 'warning', backup: { status: 'ok' } });
    expect(st.dumps.failed).toBeGreaterThan(0);
  });

  test('nightly under cron: non-zero and a short summary naming the failed dump; no backup', async () => {
    const s = setups.get('nightly')!;
    const before = await countBackups(s.loaded);
    const r = await cli(['--config', s.config, 'nightly'], { env: { PATH: CRON_PATH } });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines.length).toBeLessThanOrEqual(20);
    expect(lines[0]).toMatch(/^apiscp-backup FAILED on .*: cron run, engine duplicity/);
    expect(r.stderr).toMatch(/^ {2}mysql /m);
    expect(r.stderr).toMatch(/^log: /m);
    expect(await countBackups(s.loaded)).toBe(before);
  });

  test('wrapper scripts: failing pre-backup → duplicity never runs, nothing backed up', async () => {
    for (const name of ['two-lines', 'wrapper']) {
      const s = setups.get(name)!;
      const target = join(s.dir, `${name}-target`);
      const sets = readdirSync(target).length;
      const marker = join(s.dir, 'ran-again');
      const env = wrapperEnv(s, {
        SRC: s.root, TARGET: `file://${target}`, ARCHIVE: join(s.dir, 'cache'), MARKER: marker,
        DUPLICITY_TARGET: `file://${target}`, DUPLICITY_ARCHIVE_DIR: join(s.dir, 'cache'), PASSPHRASE_FILE: join(s.dir, 'secret'),
      });
      const r = await cli([], { file: name === 'wrapper' ? WRAPPER : TWO_LINES, env });
      expect(r.code, name).toBe(1);
      expect(existsSync(marker)).toBe(false);
      expect(readdirSync(target).length, name).toBe(sets);
      expect(r.stderr).toMatch(/^apiscp-backup FAILED/m);
      expect(readStatus(s.loaded)).toMatchObject({ status: 'failed', backup: { status: 'skipped' } });
    }
  });
});
