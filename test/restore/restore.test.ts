import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { EngineName } from '../../lib/engine/types.js';
import type { Manifest } from '../../lib/model/manifest.js';
import { loadDump } from '../../lib/demo/db-checks.js';
import { cmd } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';
import { snapshotTree } from '../../lib/demo/apiscp-tree.js';
import { assertBuilt, cli, CLI, mysqlFingerprint, NODE, pgFingerprint, rmrf, stopServers } from '../helpers/e2e.js';
import { startServers, type Servers } from '../../lib/throwaway/servers.js';
import { mountSiteOverlay } from '../helpers/overlay.js';
import { toolLog } from '../helpers/tool-log.js';
import { createRestoreFixture, seedSiteDatabases, siteFingerprints, SITE2_ROLE, SITE2_USER, type RestoreFixture } from '../helpers/restore-fixture.js';

// `list` and `restore db` through the BUILT CLI for every engine, against real servers and real
// repositories: an older backup by id and by date, --into, the refusal without --force, the
// safety dump with --force, hostile names, clear errors.

const base = mkdtempSync(join(tmpdir(), 'restore-'));
let servers: Servers;

beforeAll(async () => {
  assertBuilt();
  servers = await startServers();
  await seedSiteDatabases(servers);
});

afterAll(async () => {
  await stopServers(servers);
  rmrf(base);
});

const HOSTILE = `site2_-x $(id) 'q' ü`;
const fp = (db: string): Promise<Record<string, string>> => mysqlFingerprint(servers.mariadb, db);

interface Listed {
  local: { runId: string; time: string; status: string; databases: number }[];
  engine: string;
  backups: { id: string; time: string; chain: number; level: string }[];
}

describe.each(['none', 'restic', 'borg', 'duplicity'] as const)('%s: list and restore db', (engine: EngineName) => {
  let f: RestoreFixture;
  let first: Record<string, string>;
  let second: Record<string, string>;
  let listed: Listed;
  let site2AtBackup: Record<string, Record<string, string>>;

  beforeAll(async () => {
    f = await createRestoreFixture(base, engine, servers);
    // Each engine starts from the same content (an earlier engine's restores changed it).
    await servers.mariadb.sql(`DELETE FROM \`site2_db\`.items WHERE id >= 1000`);
    first = await fp('site2_db');
    const r1 = await f.cli(['run']);
    expect(r1.code, r1.stderr).toBe(0);
    await new Promise((r) => setTimeout(r, 1100)); // distinct second-resolution ids and times
    await servers.mariadb.sql(`INSERT INTO \`site2_db\`.items VALUES (1000, 'after the first backup', NULL)`);
    second = await fp('site2_db');
    expect(second).not.toEqual(first);
    const r2 = await f.cli(['run']);
    expect(r2.code, r2.stderr).toBe(0);
    site2AtBackup = await siteFingerprints(servers, 'site2');
  });

  test('list shows the local runs and the engine backups with their restore chain', async () => {
    const r = await f.cli(['--json', 'list']);
    expect(r.code, r.stderr).toBe(0);
    listed = JSON.parse(r.stdout) as Listed;
    expect(listed.local.length).toBe(2);
    expect(listed.local.every((l) => l.status === 'complete' && l.databases >= 5)).toBe(true);
    if (engine === 'none') expect(listed.backups).toEqual([]);
    else {
      expect(listed.backups.length).toBe(2);
      // Newest first; duplicity's second set is an incremental on top of the full: chain 2.
      expect(listed.backups.map((b) => b.chain)).toEqual(engine === 'duplicity' ? [2, 1] : [1, 1]);
      expect(Date.parse(listed.backups[0]!.time)).toBeGreaterThan(Date.parse(listed.backups[1]!.time));
    }
    const text = await f.cli(['list']);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain(listed.local[0]!.runId);
    if (engine !== 'none') expect(text.stdout).toMatch(/chain [12]/);
  });

  test('a non-empty database is not replaced without --force', async () => {
    const r = await f.cli(['restore', 'db', 'site2_db']);
    expect(r.code).toBe(8);
    expect(r.stderr).toMatch(/refusing to replace mysql database 'site2_db': it is not empty.*--force/);
    expect(await fp('site2_db')).toEqual(second);
    const journal = readFileSync(join(f.loaded.paths.stateDir, 'restores.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(journal.at(-1)).toMatchObject({ command: 'restore db', result: 'refused' });
  });

  // duplicity's backup id is its set time: by id and by date (the next case) are one look-up there.
  if (engine !== 'duplicity') test('the older backup by id, --into a new database', async () => {
    const older = engine === 'none' ? listed.local[1]!.runId : listed.backups[1]!.id;
    const r = await f.cli(['restore', 'db', 'site2_db', '--from', older, '--into', 'site2_db_old']);
    expect(r.code, r.stderr).toBe(0);
    // Its dump has a map beside it, which came back with it from the engine (a restore that
    // cannot use one says so).
    const runs = readdirSync(f.loaded.paths.dumpsDir).filter((d) => /^\d{8}T\d{6}Z$/.test(d));
    const manifest = JSON.parse(readFileSync(join(f.loaded.paths.dumpsDir, runs.sort()[0]!, 'manifest.json'), 'utf8')) as Manifest;
    expect(manifest.entries.find((e) => e.database === 'site2_db')?.map?.path).toMatch(/site2_db\.sql\.zst\.map$/);
    expect(r.stderr).not.toMatch(/map beside/);
    expect(r.stdout).toMatch(/restored mysql database 'site2_db_old' from /);
    expect(await fp('site2_db_old')).toEqual({ ...first });
    expect(await fp('site2_db')).toEqual(second);
    await servers.mariadb.sql('DROP DATABASE site2_db_old');
  });

  test('the older backup by date, --force: a safety dump first, named in the output', async () => {
    const older = engine === 'none' ? listed.local[1]!.time : listed.backups[1]!.time;
    const r = await f.cli(['restore', 'db', 'site2_db', '--from', older, '--force']);
    expect(r.code, r.stderr).toBe(0);
    const safety = /safety dump of the previous content .*: (\S+)$/m.exec(r.stdout)?.[1];
    expect(safety, r.stdout).toBeTruthy();
    expect(existsSync(safety!)).toBe(true);
    expect(await fp('site2_db')).toEqual(first);
    // The safety dump holds what was there: loading it back gives the second state again.
    const entry = { kind: 'mysql', object: 'database', database: 'site2_db', site: 'site2', path: basename(safety!), format: 'sql', compression: 'zstd', startedAt: '', durationMs: 0, status: 'ok' } as const;
    await loadDump(entry, dirname(safety!), { mysql: servers.mariadb }, 'safety_check');
    expect(await fp('safety_check')).toEqual(second);
    await servers.mariadb.sql('DROP DATABASE safety_check');
  });

  // Names and kinds are engine-independent (dump files are %-encoded): two engines suffice.
  if (engine === 'none' || engine === 'restic') test('hostile names, PostgreSQL, unknown names and backups', async () => {
    const h = await f.cli(['restore', 'db', HOSTILE, '--into', `${HOSTILE} copy`]);
    expect(h.code, h.stderr).toBe(0);
    expect(await fp(`${HOSTILE} copy`)).toEqual(await fp(HOSTILE));
    const pg = await f.cli(['restore', 'db', 'site2_blog', '--into', 'site2_blog copy']);
    expect(pg.code, pg.stderr).toBe(0);
    expect(await pgFingerprint(servers.postgres, 'site2_blog copy')).toEqual(await pgFingerprint(servers.postgres, 'site2_blog'));
    await servers.postgres.sql('DROP DATABASE "site2_blog copy"');
    await servers.mariadb.sql(`DROP DATABASE \`${HOSTILE} copy\``);
    const unknown = await f.cli(['restore', 'db', 'no_such_db']);
    expect(unknown.code).toBe(8);
    expect(unknown.stderr).toMatch(/no local run holds a database named 'no_such_db'/);
    const nope = await f.cli(['restore', 'db', 'site2_db', '--from', 'deadbeef', '--into', 'x']);
    expect(nope.code).toBe(2);
    expect(nope.stderr).toMatch(/backup deadbeef not found/);
    if (engine !== 'none') {
      const missing = await f.cli(['restore', 'files', 'site1', '/no/such/file', '--target', join(f.dir, 'copy')]);
      expect(missing.code).toBe(8);
      expect(missing.stderr).toMatch(/does not contain .*no\/such\/file/);
    }
  });

  if (engine === 'none') test('the target server down: a clear error, nothing recorded as done', async () => {
    await servers.postgres.stop();
    try {
      const r = await f.cli(['restore', 'db', 'site2_blog', '--into', 'x']);
      expect(r.code).toBe(8);
      expect(r.stderr).toMatch(/cannot restore into postgresql: the target server is not reachable/);
    } finally {
      await servers.postgres.start();
    }
  });

  // Counted from the tools' own argv (test/helpers/tool-log.ts), not from timings: restic and borg
  // take every path in one restore/extract; duplicity 0.8.22 takes one path per run, and a
  // directory in one run when the chain's manifests say it reads no more volumes than its paths:
  // this small backup is one volume, so the site's directory and dumps.dir (lib/engine/duplicity-manifest.ts).
  if (engine !== 'none') test(`restore site --target: one ${engine} fetch brings the files, latest and the site's dumps; from the older backup (a wrong guess of its run) the older run's dumps`, async () => {
    const tool = engine === 'borg' ? 'borg' : engine;
    const extraction = engine === 'borg' ? 'extract' : 'restore';
    const siteRun = async (from?: string, mute = false): Promise<{ manifest: Manifest; calls: string[][]; listings: number; from: unknown }> => {
      const tools = toolLog(base, [tool], f.env.PATH);
      const target = mkdtempSync(join(base, `site-target-${engine}-`));
      // mute: a restic whose `restoring …` line is not there (another wording, or --quiet), in front of the counting one.
      const muted = mute ? join(target, '..', `${basename(target)}-mute`) : undefined;
      if (muted) {
        mkdirSync(muted);
        writeFileSync(join(muted, tool), `#!/bin/bash\nset -o pipefail\n${tools.path.split(':')[0]}/${tool} "$@" | { grep -v '^restoring ' || true; }\n`, { mode: 0o755 });
      }
      const r = await cli(['--config', f.config, 'restore', 'site', 'site2', '--target', target, ...(from ? ['--from', from] : [])], { env: { ...f.env, PATH: muted ? `${muted}:${tools.path}` : tools.path } });
      expect(r.code, r.stderr).toBe(0);
      expect(existsSync(join(target, 'site2/shadow/var/www/html/index.html'))).toBe(true);
      expect(existsSync(join(target, 'site2/info'))).toBe(true);
      const manifest = JSON.parse(readFileSync(join(target, 'site2/dumps/manifest.json'), 'utf8')) as Manifest;
      for (const e of manifest.entries.filter((x) => x.site === 'site2' && x.object === 'database')) expect(existsSync(join(target, 'site2/dumps', e.path!)), e.path).toBe(true);
      const journal = readFileSync(join(f.loaded.paths.stateDir, 'restores.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      const listing = engine === 'borg' ? 'list' : engine === 'restic' ? 'snapshots' : 'collection-status';
      return {
        manifest,
        calls: tools.calls().filter((c) => c.tool === tool && c.argv.includes(extraction)).map((c) => c.argv),
        listings: tools.calls().filter((c) => c.tool === tool && c.argv.includes(listing)).length,
        from: journal.at(-1)?.from,
      };
    };
    const dumps = f.loaded.paths.dumpsDir.replace(/^\/+/, '');
    const newest = await siteRun();
    expect(newest.manifest.runId).toBe(listed.local[0]!.runId);
    if (engine === 'duplicity') {
      const restored = newest.calls.map((a) => a[a.indexOf('--file-to-restore') + 1]!);
      const home = f.tree.home.replace(/^\/+/, '');
      // Two runs, not the seven of one path each (shadow, info, the sidecar, latest, the run's manifest, its site2/, the accounts exports).
      expect(restored).toEqual([`${home}/site2`, dumps]);
    } else {
      expect(newest.calls).toHaveLength(1);
    }
    if (engine === 'restic') {
      // restic picks the newest itself as it extracts (`latest`), and says which: no listing, and
      // the journal names the snapshot exactly as a restore of it by its id (listed first) does.
      expect(newest.calls[0]).toContain('latest');
      expect(newest.listings).toBe(0);
      const byId = await siteRun(listed.backups[0]!.id);
      expect(byId.listings).toBe(1);
      expect(newest.from).toBe(byId.from);
      expect(newest.from).toContain(listed.backups[0]!.id);
      // A restic whose first line cannot be read (another wording, or --quiet): the newest listed
      // is fetched again by its id, and that is the one named.
      const muted = await siteRun(undefined, true);
      expect(muted.manifest.runId).toBe(listed.local[0]!.runId);
      expect(muted.calls.map((a) => a[a.indexOf('restore') + 1])).toEqual(['latest', listed.backups[0]!.id]);
      expect(muted.listings).toBe(1);
      expect(muted.from).toBe(byId.from);
    }
    // The older backup: the guess (the newest local run) is wrong, the backup's own `latest` wins,
    // and that run's manifest and dumps come in one more fetch.
    const older = await siteRun(listed.backups[1]!.id);
    expect(older.manifest.runId).toBe(listed.local[1]!.runId);
    if (engine !== 'duplicity') expect(older.calls).toHaveLength(2);
    // duplicity's dumps.dir as of the older backup holds that run's manifest and dumps: no second fetch.
    else expect(older.calls.map((a) => a[a.indexOf('--file-to-restore') + 1]!)).toEqual([`${f.tree.home.replace(/^\/+/, '')}/site2`, dumps]);
  });

  test(engine === 'none' ? 'restore site: files refused (engine none backs up none), --databases from the local run' : 'site2 broken, then `restore site site2 --in-place --exact`: files and databases as at backup time, site1 and site3 untouched', async () => {
    if (engine !== 'none') return siteRestoreCase(f, engine, site2AtBackup);
    const files = await f.cli(['restore', 'site', 'site2', '--in-place']);
    expect(files.code).toBe(8);
    expect(files.stderr).toMatch(/engine none backs up no files/);
    await servers.mariadb.sql('DROP DATABASE site2_db');
    const r = await f.cli(['restore', 'site', 'site2', '--databases', '--in-place']);
    expect(r.code, r.stderr).toBe(0);
    expect(await siteFingerprints(servers, 'site2')).toEqual(site2AtBackup);
  });
});

/** A hacked site2: files deleted (ACL'd, xattr'd, a symlink), changed, added; its databases, user and role dropped. */
async function breakSite2(f: RestoreFixture, opts: { whiteout: boolean }): Promise<void> {
  const html = join(f.tree.home, 'site2/shadow/var/www/html');
  rmSync(join(html, 'index.html'));
  rmSync(join(html, 'logo.bin'));
  rmSync(join(html, 'home.html'));
  rmSync(join(html, 'new\nline.txt'));
  writeFileSync(join(html, 'name with space.txt'), 'defaced\n');
  chmodSync(join(html, 'empty'), 0o666);
  await run(cmd('setfacl', ['-b', html]));
  writeFileSync(join(html, 'shell.php'), '<?php system($_GET["c"]);');
  mkdirSync(join(html, 'evil/deeper'), { recursive: true });
  writeFileSync(join(html, 'evil/deeper/x'), 'x');
  writeFileSync(join(f.tree.home, 'site2/info/current/apache'), 'enabled = 0\n');
  if (opts.whiteout) rmSync(join(html, 'deep/removed.txt'));
  for (const db of ['site2_db', `site2_-x $(id) 'q' ü`]) await servers.mariadb.sql(`DROP DATABASE \`${db}\``);
  await servers.mariadb.sql(`DROP USER '${SITE2_USER}'@'localhost'`);
  await servers.postgres.sql('DROP DATABASE site2_blog');
  await servers.postgres.sql(`DROP ROLE "${SITE2_ROLE}"`);
}

/** The shared sandbox of one engine, after its backups: site2 broken, then put back. */
async function siteRestoreCase(f: RestoreFixture, engine: EngineName, dbsBefore: Record<string, Record<string, string>>): Promise<void> {
  {
    const rels = (re: RegExp): string[] => f.tree.included.filter((p) => re.test(p));
    const site2 = rels(/^home\/virtual\/site2\//);
    const others = rels(/^home\/virtual\/site[13]\//);
    const [before2, beforeOthers] = await Promise.all([snapshotTree(f.root, site2), snapshotTree(f.root, others)]);
    const rawDb = f.tree.excluded.find((p) => p.startsWith('home/virtual/site2/shadow/var/lib/mysql/'))!;
    // restic goes through a mounted overlay (a live site), the others straight into shadow.
    const overlay = engine === 'restic';
    await breakSite2(f, { whiteout: !overlay });
    const ov = overlay ? await mountSiteOverlay(f.tree.home, 'site2', join(f.tree.home, 'FILESYSTEMTEMPLATE/siteinfo')) : undefined;
    const restoreCli = (args: string[]) =>
      ov ? cli(ov.argv(NODE, [CLI, '--config', f.config, ...args]), { file: 'nsenter', env: f.env }) : f.cli(args);
    try {
      const plan = await restoreCli(['restore', 'site', 'site2', '--exact']);
      expect(plan.code, plan.stderr).toBe(0);
      expect(plan.stdout).toMatch(/missing .*index\.html/);
      expect(plan.stdout).toMatch(/extra .*shell\.php/);
      expect(plan.stdout).toMatch(/nothing changed/);
      if (ov) expect(plan.stdout).toMatch(/fst \(the mounted overlay/);
      expect(existsSync(join(f.tree.home, 'site2/shadow/var/www/html/shell.php'))).toBe(true);
      const t = Date.now();
      const done = await restoreCli(['restore', 'site', 'site2', '--in-place', '--exact']);
      expect(done.code, done.stderr).toBe(0);
      console.info(`${engine} restore site: ${Date.now() - t} ms`);
      expect(done.stdout).toMatch(/accounts created.*site2_u/);
    } finally {
      await ov?.stop();
    }
    const after2 = Object.fromEntries(await snapshotTree(f.root, site2));
    // Mounting the overlay (not the restore) marks its upper directory with an overlay uuid.
    if (ov) delete (after2['home/virtual/site2/shadow']!.xattrs as Record<string, string>)['trusted.overlay.uuid'];
    expect(after2).toEqual(Object.fromEntries(before2));
    expect(Object.fromEntries(await snapshotTree(f.root, others))).toEqual(Object.fromEntries(beforeOthers));
    for (const gone of ['shell.php', 'evil']) expect(existsSync(join(f.tree.home, 'site2/shadow/var/www/html', gone)), gone).toBe(false);
    // What the backup leaves out is never taken for "extra": the raw database files stay.
    expect(existsSync(join(f.root, rawDb))).toBe(true);
    expect(await siteFingerprints(servers, 'site2')).toEqual(dbsBefore);
    // The DEFINER user and the owning role came back with the databases.
    expect((await servers.mariadb.sql('SELECT COUNT(*) FROM `site2_db`.definer_view')).trim()).toBe((await servers.mariadb.sql('SELECT COUNT(*) FROM `site2_db`.items')).trim());
    expect((await servers.postgres.sql(`SELECT tableowner FROM pg_tables WHERE tablename = 'items'`, 'site2_blog')).trim()).toBe(SITE2_ROLE);
    const journal = readFileSync(join(f.loaded.paths.stateDir, 'restores.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(journal.at(-1)).toMatchObject({ command: 'restore site', what: 'site2', result: 'ok' });
  }
}
