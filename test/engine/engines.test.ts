import { lstat, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { execa } from 'execa';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { LoadedConfig } from '../../lib/config/load.js';
import { resolvePaths } from '../../lib/config/paths.js';
import { configSchema } from '../../lib/config/schema.js';
import { restoreAcls } from '../../lib/engine/acl-restore.js';
import { sidecarFileName, writeAclSidecar } from '../../lib/engine/acl-sidecar.js';
import { borgCreateArgs, borgEngine, borgEnv, borgExitMessage, borgExtractArgs } from '../../lib/engine/borg.js';
import { duplicityBackupArgs, duplicityCommand, duplicityEngine, duplicityPruneArgs, duplicityRestoreArgs } from '../../lib/engine/duplicity.js';
import { getEngine } from '../../lib/engine/index.js';
import { resticBackupArgs, resticEngine, resticEnv, resticExitMessage, resticRestoreArgs } from '../../lib/engine/restic.js';
import type { Engine, EngineContext, EngineResult } from '../../lib/engine/types.js';
import { ConfigError, EngineError } from '../../lib/errors.js';
import { memoryLogger } from '../../lib/log.js';
import { expandBackupPaths } from '../../lib/plan/paths.js';
import { cmd } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';
import { buildApiscpTree, snapshotTree, type EntrySnapshot, type TreeInfo } from '../../lib/demo/apiscp-tree.js';

// Real engines on a real ApisCP-shaped tree: back up, restore into an empty dir, compare every
// entry's content, mode, owner, ACLs and xattrs. Needs root, duplicity, restic, borg, acl, attr.

const SECRET = `pass phrase'"$(x)`;
const work: string[] = [];
const timings: Record<string, { backupMs: number; restoreMs: number }> = {};

afterAll(async () => {
  console.log('engine timings on the fixture (ms):', JSON.stringify(timings));
  for (const w of work) await rm(w, { recursive: true, force: true });
});

async function tempDir(prefix: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix));
  work.push(d);
  return d;
}

function loadedFrom(raw: Record<string, unknown>): LoadedConfig {
  const config = configSchema.parse(raw);
  return { config, file: undefined, paths: resolvePaths(config) };
}

interface Fixture {
  base: string;
  tree: TreeInfo;
  loaded: LoadedConfig;
  ctx: EngineContext;
  /** Dump files (relative to the root) that must come back. */
  dumps: string[];
}

async function fixture(engine: Record<string, unknown>): Promise<Fixture> {
  const base = await tempDir('apiscp-engine-');
  const root = join(base, 'root');
  const tree = await buildApiscpTree(root, { sites: 2 });
  await writeFile(join(base, 'secret'), SECRET + '\n', { mode: 0o600 });
  const loaded = loadedFrom({ paths: { root }, ...engine });
  // A stand-in for a finished dump run and a run still being written (must be left out).
  const run1 = join(loaded.paths.dumpsDir, '2026-11-26T030000');
  await mkdir(join(run1, 'mysql'), { recursive: true });
  await writeFile(join(run1, 'mysql/site1_wp.sql'), 'CREATE TABLE wp_posts (id int);\n');
  await writeFile(join(run1, 'manifest.json'), '{"complete":true}\n');
  await mkdir(join(loaded.paths.dumpsDir, '2026-11-27T030000.inprogress'), { recursive: true });
  await writeFile(join(loaded.paths.dumpsDir, '2026-11-27T030000.inprogress/half.sql'), 'CREATE');
  const rel = (p: string): string => p.slice(root.length + 1);
  const dumps = [loaded.paths.dumpsDir, run1, join(run1, 'mysql'), join(run1, 'mysql/site1_wp.sql'), join(run1, 'manifest.json')].map(rel);
  const { sources, excludes } = await expandBackupPaths(loaded.paths);
  const ctx: EngineContext = { loaded, log: memoryLogger(), sources, excludes };
  return { base, tree, loaded, ctx, dumps };
}

/** Back up, restore, and return both snapshots plus what the restore left out. */
async function roundTrip(engine: Engine, f: Fixture): Promise<{ result: EngineResult; before: Map<string, EntrySnapshot>; after: Map<string, EntrySnapshot>; restoredRoot: string }> {
  await engine.check(f.ctx);
  const extra: string[] = [];
  if (!engine.keepsAcls) {
    const sidecar = join(f.loaded.paths.dumpsDir, sidecarFileName());
    await writeAclSidecar(f.ctx.sources, sidecar);
    extra.push(sidecar.slice(f.tree.root.length + 1));
  }
  const paths = [...f.tree.included, ...f.dumps, ...extra];
  const before = await snapshotTree(f.tree.root, paths);
  let t = Date.now();
  const result = await engine.backup(f.ctx);
  const backupMs = Date.now() - t;
  const target = join(f.base, 'restore');
  await mkdir(target);
  t = Date.now();
  await engine.restore!(f.ctx, target);
  if (!engine.keepsAcls) await restoreAcls(target);
  timings[engine.name] = { backupMs, restoreMs: Date.now() - t };
  // Every engine restores /x/y as TARGET/x/y.
  const restoredRoot = join(target, f.tree.root);
  const after = await snapshotTree(restoredRoot, paths);
  return { result, before, after, restoredRoot };
}

async function absent(restoredRoot: string, rels: readonly string[]): Promise<string[]> {
  const present: string[] = [];
  for (const r of rels) if (await lstat(join(restoredRoot, r)).then(() => true, () => false)) present.push(r);
  return present;
}

/** Compare everything but the whiteouts, which engines treat differently (asserted per engine). */
function expectSameTree(before: Map<string, EntrySnapshot>, after: Map<string, EntrySnapshot>, whiteouts: readonly string[]): void {
  const strip = (m: Map<string, EntrySnapshot>) => Object.fromEntries([...m].filter(([k]) => !whiteouts.includes(k)));
  expect(strip(after)).toEqual(strip(before));
  // The fixture must really exercise what we claim to check.
  const all = [...before.values()];
  expect(all.some((e) => e.defaultAcl?.includes('user:33:rwx'))).toBe(true);
  expect(all.some((e) => e.acl?.includes('user:33:rw-'))).toBe(true);
  expect(all.some((e) => e.xattrs['user.origin'])).toBe(true);
  expect(all.some((e) => e.xattrs['trusted.overlay.opaque'] === '0x79')).toBe(true);
  expect(all.some((e) => e.type === 'symlink' && e.symlinkTarget === 'index.html')).toBe(true);
  expect(all.some((e) => e.uid === 1500 && e.gid === 1501)).toBe(true);
}

describe('expandBackupPaths', () => {
  it('matches only real siteN directories, drops absent paths, adds the dumps dir', async () => {
    const base = await tempDir('apiscp-paths-');
    const root = join(base, 'root');
    await buildApiscpTree(root, { sites: 2 });
    // Traps: a domain that starts with "site", and a symlink that looks like a site.
    await symlink('site2', join(root, 'home/virtual/site-builder.com'));
    await symlink('site1', join(root, 'home/virtual/site99'));
    const loaded = loadedFrom({ paths: { root, include: [...configSchema.parse({}).paths.include, '/opt/absent/*'] } });
    const { sources, excludes } = await expandBackupPaths(loaded.paths);
    const r = (p: string): string => join(root, p);
    expect(sources).toEqual(
      [
        'home/virtual/site1/info',
        'home/virtual/site1/shadow',
        'home/virtual/site2/info',
        'home/virtual/site2/shadow',
        'var/backup/apiscp-backup',
        'var/lib/mysql/mysql-grants',
        'var/lib/pgsql/15/backups',
        'var/log/mailer_table',
        'var/log/mailer_table-20261120.gz',
      ].map(r),
    );
    expect(excludes).toEqual(
      [
        'home/virtual/FILESYSTEMTEMPLATE',
        'home/virtual/site1/fst',
        'home/virtual/site1/shadow/var/lib',
        'home/virtual/site2/fst',
        'home/virtual/site2/shadow/var/lib',
        'var/backup/apiscp-backup/*.inprogress',
      ].map(r),
    );
  });
});

describe('argv builders (exact, no secrets)', () => {
  const sources = ['/home/virtual/site1/shadow', '/var/backup/apiscp-backup'];
  const excludes = ['/home/virtual/site1/shadow/var/lib', '/var/backup/apiscp-backup/*.inprogress'];
  const secretFile = '/etc/apiscp-backup/secret';

  it('duplicity', () => {
    const l = loadedFrom({ engine: 'duplicity', duplicity: { target: 'file:///backup/dup', passphrase_file: secretFile, extra_args: ['--volsize', '200'] } });
    expect(duplicityBackupArgs(l, sources, excludes)).toEqual([
      '--full-if-older-than', '1M', '--archive-dir', '/var/cache/duplicity', '--name', 'apiscp', '--volsize', '200',
      '--exclude', '/home/virtual/site1/shadow/var/lib', '--exclude', '/var/backup/apiscp-backup/*.inprogress',
      '--include', '/home/virtual/site1/shadow', '--include', '/var/backup/apiscp-backup', '--exclude', '**', '/', 'file:///backup/dup',
    ]);
    expect(duplicityPruneArgs(l)).toEqual(['remove-all-but-n-full', '2', '--force', '--archive-dir', '/var/cache/duplicity', '--name', 'apiscp', '--volsize', '200', 'file:///backup/dup']);
    const plain = loadedFrom({ duplicity: { target: 'file:///b' } });
    expect(duplicityRestoreArgs(plain, '/tmp/r', true)).toEqual(['restore', '--force', '--archive-dir', '/var/cache/duplicity', '--name', 'apiscp', '--no-encryption', 'file:///b', '/tmp/r']);
  });

  it('restic', () => {
    const l = loadedFrom({ restic: { repository: '/backup/restic', password_file: secretFile } });
    expect(resticBackupArgs(l, sources, excludes)).toEqual([
      'backup', '--json', '--tag', 'apiscp-backup', '--exclude', excludes[0], '--exclude', excludes[1], '--', ...sources,
    ]);
    expect(resticRestoreArgs(l, '/tmp/r')).toEqual(['restore', 'latest', '--target', '/tmp/r']);
    expect(resticEnv(l)).toEqual({ RESTIC_REPOSITORY: '/backup/restic', RESTIC_PASSWORD_FILE: secretFile });
  });

  it('borg', () => {
    const l = loadedFrom({ borg: { repository: '/backup/borg', passphrase_file: '/etc/x y/secret' } });
    expect(borgCreateArgs(l, sources, excludes)).toEqual([
      'create', '--json', '--numeric-ids', '--compression', 'zstd,3',
      '--exclude', 'pp:/home/virtual/site1/shadow/var/lib', '--exclude', 'sh:/var/backup/apiscp-backup/*.inprogress',
      '::{hostname}-{now:%Y-%m-%dT%H:%M:%S.%f}', ...sources,
    ]);
    expect(borgExtractArgs(l, 'h-2026')).toEqual(['extract', '--numeric-ids', '::h-2026']);
    expect(borgEnv(l)).toEqual({ BORG_REPO: '/backup/borg', BORG_RELOCATED_REPO_ACCESS_IS_OK: 'no', BORG_PASSCOMMAND: "cat '/etc/x y/secret'" });
  });

  it('config problems name the key; none and the registry', async () => {
    const ctx = (raw: Record<string, unknown>): EngineContext => ({ loaded: loadedFrom(raw), log: memoryLogger(), sources: [], excludes: [] });
    await expect(duplicityEngine.check(ctx({}))).rejects.toMatchObject({ key: 'duplicity.target' });
    await expect(resticEngine.check(ctx({ restic: { repository: '/r' } }))).rejects.toMatchObject({ key: 'restic.password_file' });
    await expect(borgEngine.check(ctx({}))).rejects.toBeInstanceOf(ConfigError);
    const none = getEngine('none');
    expect(none).toMatchObject({ drivesBackup: false, keepsAcls: true });
    expect(await none.backup(ctx({}))).toMatchObject({ warnings: [] });
    expect(getEngine('duplicity')).toBe(duplicityEngine);
    expect(resticExitMessage(10)).toMatch(/apiscp-backup repo-init/);
    expect(resticExitMessage(11)).toMatch(/locked/);
    expect(borgExitMessage(2, 'Failed to create/acquire the lock /r/lock.exclusive')).toMatch(/break-lock/);
  });
});

describe('duplicity', () => {
  it('round trip with the ACL sidecar; wrong passphrase, lock and non-empty target fail clearly', async () => {
    const f0 = await fixture({});
    const target = `file://${join(f0.base, 'dup-target')}`;
    const f = { ...f0, loaded: loadedFrom({ ...f0.loaded.config, duplicity: { target, passphrase_file: join(f0.base, 'secret') } }) };
    f.ctx = { ...f0.ctx, loaded: f.loaded };
    const { result, before, after, restoredRoot } = await roundTrip(duplicityEngine, f);
    expect(result.level).toBe('Full');
    expectSameTree(before, after, f.tree.whiteouts);
    // duplicity stores device nodes: the whiteout comes back as char 0:0; its xattr via the sidecar.
    for (const w of f.tree.whiteouts) expect(after.get(w)).toEqual(before.get(w));
    expect(await absent(restoredRoot, [...f.tree.excluded, 'var/backup/apiscp-backup/2026-11-27T030000.inprogress'])).toEqual([]);

    // Second run: incremental; prune (keep 2 full chains) keeps the one chain whole.
    expect((await duplicityEngine.backup(f.ctx)).level).toBe('Incremental');
    const targetDir = join(f0.base, 'dup-target');
    const volumes = (await readdir(targetDir)).sort();
    expect(volumes.filter((v) => v.startsWith('duplicity-full.')).length).toBeGreaterThan(0);
    expect(volumes.filter((v) => v.startsWith('duplicity-inc.')).length).toBeGreaterThan(0);
    await duplicityEngine.prune!(f.ctx);
    expect((await readdir(targetDir)).sort()).toEqual(volumes);

    // Restore into a non-empty dir: duplicity's own refusal (11).
    await expect(duplicityEngine.restore!(f.ctx, f.base)).rejects.toThrow(/exit 11: restore target exists/);
    // Wrong passphrase with a cold cache: gpg fails (31).
    await writeFile(join(f.base, 'wrong'), 'nope\n');
    const wrong = loadedFrom({ ...f.loaded.config, duplicity: { ...f.loaded.config.duplicity, passphrase_file: join(f.base, 'wrong'), archive_dir: join(f.base, 'cold') } });
    const gpgError = await engineError(duplicityEngine.restore!({ ...f.ctx, loaded: wrong }, join(f.base, 'r2')));
    expect(gpgError.message).toMatch(/exit 31: gpg failed/);
    // Passphrases travel in PASSPHRASE only: not in argv, not in what we report.
    expect(JSON.stringify([gpgError.message, gpgError.context])).not.toMatch(/nope|pass phrase/);
    const { command, secrets } = await duplicityCommand(f.loaded, ['--version']);
    expect(command.env?.PASSPHRASE).toBe(SECRET);
    expect(secrets).toEqual([SECRET]);
    expect(command.args.join(' ')).not.toContain(SECRET);

    // Another duplicity holds the archive dir lock (fasteners = fcntl lockf): exit 23.
    const lockfile = join(f.loaded.paths.duplicityArchiveDir, 'apiscp', 'lockfile');
    // The holder says "locked" on its stdout once it has the lock, and holds it until killed.
    const holder = execa('python3', ['-c', `import fcntl,sys,signal\nf=open(sys.argv[1],'a')\nfcntl.lockf(f,fcntl.LOCK_EX)\nprint('locked',flush=True)\nsignal.pause()`, lockfile], { reject: false });
    await once(holder.stdout!, 'data');
    try {
      await expect(duplicityEngine.backup(f.ctx)).rejects.toThrow(/exit 23: another duplicity holds the archive dir lock/);
    } finally {
      holder.kill('SIGTERM');
      await holder;
    }
  });
});

describe('restic', () => {
  it('round trip keeps ACLs, xattrs, owners; a missing repository says run apiscp-backup repo-init', async () => {
    const f0 = await fixture({});
    const repo = join(f0.base, 'restic-repo');
    const loaded = loadedFrom({ ...f0.loaded.config, restic: { repository: repo, password_file: join(f0.base, 'secret') } });
    const ctx = { ...f0.ctx, loaded };
    const missing = await engineError(resticEngine.backup(ctx));
    expect(missing.message).toMatch(/no repository.*apiscp-backup repo-init/);
    await run(cmd('restic', ['init'], { env: resticEnv(loaded) }));
    const { result, before, after, restoredRoot } = await roundTrip(resticEngine, { ...f0, loaded, ctx });
    expect(result.id).toMatch(/^[0-9a-f]{8,64}$/); // 0.14 prints the short id
    expect(result.warnings).toEqual([]);
    expectSameTree(before, after, f0.tree.whiteouts);
    // restic 0.14 keeps the device node and its trusted.overlay xattr.
    for (const w of f0.tree.whiteouts) expect(after.get(w)).toEqual(before.get(w));
    expect(await absent(restoredRoot, [...f0.tree.excluded, 'var/backup/apiscp-backup/2026-11-27T030000.inprogress'])).toEqual([]);
    // A source that vanished: restic 0.14 skips it with exit 0 (no exit 3): reported as a warning.
    const partial = await resticEngine.backup({ ...ctx, sources: [...ctx.sources, join(f0.base, 'vanished')] });
    expect(partial.id).toMatch(/^[0-9a-f]{8,64}$/);
    expect(partial.warnings.join()).toMatch(/vanished does not exist, skipping/);
  });
});

describe('borg', () => {
  it('round trip keeps ACLs, xattrs, numeric owners; a missing repository fails clearly', async () => {
    const f0 = await fixture({});
    const repo = join(f0.base, 'borg-repo');
    const loaded = loadedFrom({ ...f0.loaded.config, borg: { repository: repo, passphrase_file: join(f0.base, 'secret') } });
    const ctx = { ...f0.ctx, loaded };
    const missing = await engineError(borgEngine.backup(ctx));
    expect(missing.message).toMatch(/no repository.*apiscp-backup repo-init/);
    await run(cmd('borg', ['init', '--encryption=repokey'], { env: borgEnv(loaded) }));
    const { result, before, after, restoredRoot } = await roundTrip(borgEngine, { ...f0, loaded, ctx });
    // The archive borg made is named to the microsecond (not {now}'s one second).
    expect(result.id).toMatch(/-\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/);
    expectSameTree(before, after, f0.tree.whiteouts);
    for (const w of f0.tree.whiteouts) expect(after.get(w)).toEqual(before.get(w));
    expect(await absent(restoredRoot, [...f0.tree.excluded, 'var/backup/apiscp-backup/2026-11-27T030000.inprogress'])).toEqual([]);
    // A source that vanished: borg's exit 1 is a warning, the archive exists.
    const partial = await borgEngine.backup({ ...ctx, sources: [...ctx.sources, join(f0.base, 'vanished')] });
    expect(partial.warnings.join()).toMatch(/warning.*vanished/);
    expect(partial.id).not.toBe(result.id);
    // Two runs straight after each other (within a second here) each get their own archive.
    const small = { ...ctx, sources: [join(restoredRoot, 'var/backup/apiscp-backup')] };
    const [a, b] = [await borgEngine.backup(small), await borgEngine.backup(small)];
    expect(a.id).not.toBe(b.id);
    const names = (await run(cmd('borg', ['list', '--short'], { env: borgEnv(loaded) }))).stdout.trim().split('\n');
    expect(names).toEqual(expect.arrayContaining([result.id, partial.id, a.id, b.id]));
    expect(names).toHaveLength(4);
  });
});

async function engineError(p: Promise<unknown>): Promise<EngineError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(EngineError);
  return err as EngineError;
}
