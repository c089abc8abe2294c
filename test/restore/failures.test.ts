import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { cmd } from '../../lib/proc/command.js';
import { exitClasses } from '../../lib/proc/exit-status.js';
import { run } from '../../lib/proc/run.js';
import { startServers, type Servers } from '../../lib/throwaway/servers.js';
import { dumpEntry, replaceDump, zstdBytes, zstdText } from '../helpers/dump-files.js';
import { assertBuilt, mysqlFingerprint, pgFingerprint, rmrf, stopServers } from '../helpers/e2e.js';
import { createRestoreFixture, seedSiteDatabases, SITE2_ROLE, type RestoreFixture } from '../helpers/restore-fixture.js';

// `restore db` on the bad night, through the BUILT CLI against real servers and a real restic
// repository: the staging directory is a real tmpfs that fills up, dumps are damaged after their
// manifest entries were written (so the sha256 check passes and only the load can fail), and in
// every case the database the restore was aimed at must come out as it went in.

const base = mkdtempSync(join(tmpdir(), 'restore-fail-'));
let servers: Servers;
let f: RestoreFixture;
let runDir: string;
let snapshot: string;

/** ~512 KiB of random (incompressible) rows: a dump that does not fit a 256 KiB staging disk. */
const BULK = 'bulk';

beforeAll(async () => {
  assertBuilt();
  servers = await startServers();
  await seedSiteDatabases(servers);
  const rows = Array.from({ length: 512 }, (_, i) => `(${i}, X'${randomBytes(1024).toString('hex')}')`);
  await servers.mariadb.sql(`CREATE DATABASE ${BULK}; CREATE TABLE ${BULK}.b (id INT PRIMARY KEY, data BLOB) ENGINE=InnoDB; INSERT INTO ${BULK}.b VALUES ${rows.join(',')};`);
  f = await createRestoreFixture(base, 'restic', servers);
  const r = await f.cli(['run']);
  expect(r.code, r.stderr).toBe(0);
  runDir = join(f.loaded.paths.dumpsDir, readlinkSync(join(f.loaded.paths.dumpsDir, 'latest')));
  const listed = await f.cli(['--json', 'list']);
  expect(listed.code, listed.stderr).toBe(0);
  snapshot = (JSON.parse(listed.stdout) as { backups: { id: string }[] }).backups[0]!.id;
});

afterAll(async () => {
  await stopServers(servers);
  rmrf(base);
});

const qm = (n: string): string => '`' + n.replace(/`/g, '``') + '`';
const SCHEMA_OF = (db: string): string => `CONVERT(UNHEX('${Buffer.from(db).toString('hex')}') USING utf8mb4)`;

/** Rows (checksums), views, triggers, columns and DEFINERs: what "the original is still there" means. */
async function mysqlContent(db: string): Promise<Record<string, string>> {
  const s = SCHEMA_OF(db);
  return {
    ...(await mysqlFingerprint(servers.mariadb, db)),
    columns: await servers.mariadb.sql(`SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_KEY FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=${s} ORDER BY TABLE_NAME, ORDINAL_POSITION`),
    definers: await servers.mariadb.sql(`SELECT TABLE_NAME, DEFINER FROM information_schema.VIEWS WHERE TABLE_SCHEMA=${s} ORDER BY TABLE_NAME`),
  };
}

async function pgContent(db: string): Promise<Record<string, string>> {
  return {
    ...(await pgFingerprint(servers.postgres, db)),
    columns: await servers.postgres.sql(`SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position`, db),
    owners: await servers.postgres.sql(`SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`, db),
  };
}

const mysqlHas = async (db: string): Promise<boolean> => (await servers.mariadb.sql(`SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME=${SCHEMA_OF(db)}`)).trim() === '1';
const pgHas = async (db: string): Promise<boolean> => (await servers.postgres.sql(`SELECT count(*) FROM pg_database WHERE datname = '${db}'`)).trim() === '1';
const safetyFiles = (): string[] => (existsSync(join(f.loaded.paths.dumpsDir, 'safety')) ? readdirSync(join(f.loaded.paths.dumpsDir, 'safety')) : []);
const lastJournal = (): Record<string, unknown> =>
  JSON.parse(readFileSync(join(f.loaded.paths.stateDir, 'restores.jsonl'), 'utf8').trim().split('\n').at(-1)!) as Record<string, unknown>;

describe('the staging directory runs out of space (a real tmpfs)', () => {
  async function withStagingTmpfs<T>(options: string, body: (dir: string) => Promise<T>): Promise<T> {
    const dir = f.loaded.paths.stagingDir;
    mkdirSync(dir, { recursive: true });
    await run(cmd('mount', ['-t', 'tmpfs', '-o', options, 'asb-staging-test', dir]));
    try {
      return await body(dir);
    } finally {
      await run(cmd('umount', [dir]));
    }
  }

  test('the dump does not fit: refused before fetching it, naming the directory; staging empty, the database untouched', async () => {
    const dumpBytes = dumpEntry(runDir, BULK).bytes!;
    expect(dumpBytes).toBeGreaterThan(400 * 1024); // the premise: random rows do not compress
    const bulkSum = (): Promise<string> => servers.mariadb.sql(`CHECKSUM TABLE ${BULK}.b EXTENDED; SELECT COUNT(*) FROM ${BULK}.b`);
    const before = await bulkSum();
    const safety = safetyFiles();
    await withStagingTmpfs('mode=0700,size=256k', async (dir) => {
      const r = await f.cli(['restore', 'db', BULK, '--from', snapshot, '--force']);
      expect(r.code, r.stderr).toBe(8);
      expect(r.stderr).toContain(`not enough space in the staging directory ${dir} (restore.staging_dir)`);
      expect(r.stderr).toMatch(/the dumps need \d{3} KB, 2\d\d KB free; nothing was restored/);
      expect(r.stderr).not.toMatch(/at .*\.js:\d+/); // a message, not a stack
      expect(readdirSync(dir)).toEqual([]);
    });
    expect(await bulkSum()).toEqual(before);
    expect(safetyFiles()).toEqual(safety); // refused before a safety dump was even needed
    expect(lastJournal()).toMatchObject({ command: 'restore db', result: 'failed' });
  });

  test('not even the manifest fits: the engine hits ENOSPC; the same clean error, staging empty, the database untouched', async () => {
    expect(statSync(join(runDir, 'manifest.json')).size).toBeGreaterThan(4096); // the premise: one page is too small
    const before = await mysqlContent('site2_db');
    await withStagingTmpfs('mode=0700,size=4k', async (dir) => {
      const r = await f.cli(['restore', 'db', 'site2_db', '--from', snapshot, '--force']);
      expect(r.code, r.stderr).toBe(8);
      expect(r.stderr).toContain(`not enough space in the staging directory ${dir} (restore.staging_dir)`);
      expect(r.stderr).toMatch(/fetching \S+manifest\.json from restic snapshot \w+ .* filled it; nothing was restored/);
      expect(readdirSync(dir)).toEqual([]);
    });
    expect(await mysqlContent('site2_db')).toEqual(before);
  });

  test('no inode left for the private directory itself: the same clean error, not an internal one', async () => {
    await withStagingTmpfs('mode=0700,size=1m,nr_inodes=1', async (dir) => {
      const r = await f.cli(['restore', 'db', 'site2_db', '--from', snapshot, '--into', 'never_made']);
      expect(r.code, r.stderr).toBe(8);
      expect(r.stderr).toContain(`not enough space in the staging directory ${dir} (restore.staging_dir)`);
      expect(readdirSync(dir)).toEqual([]);
    });
    expect(await mysqlHas('never_made')).toBe(false);
  });
});

describe('the load fails part-way (dumps damaged after their manifest entry)', () => {
  let goodMysql: Buffer;
  let goodPg: Buffer;
  let mysqlFile: string;
  let pgFile: string;

  beforeAll(async () => {
    mysqlFile = join(runDir, dumpEntry(runDir, 'site2_db', 'mysql').path!);
    pgFile = join(runDir, dumpEntry(runDir, 'site2_blog', 'postgresql').path!);
    goodMysql = readFileSync(mysqlFile);
    goodPg = readFileSync(pgFile);
    // MariaDB: a statement the server rejects after the first table was created and filled.
    const sql = await zstdText(mysqlFile);
    const lines = sql.split('\n');
    const creates = lines.flatMap((l, i) => (l.startsWith('CREATE TABLE') ? [i] : []));
    expect(creates.length).toBeGreaterThanOrEqual(2);
    expect(lines.slice(creates[0], creates[1]).some((l) => l.startsWith('INSERT INTO'))).toBe(true); // rows load before the failure
    lines.splice(creates[1]!, 0, 'THIS IS NOT SQL THE SERVER TAKES;');
    replaceDump(runDir, 'site2_db', await zstdBytes(lines.join('\n'), join(base, 'damaged.sql')), { keepManifestHash: false, kind: 'mysql' });
    // PostgreSQL: garbage inside the last compressed data block (zlib header 78 9c), so the
    // schema reads and the tables are created before pg_restore fails on the data.
    const damaged = Buffer.from(goodPg);
    const block = damaged.lastIndexOf(Buffer.from([0x78, 0x9c]));
    expect(block).toBeGreaterThan(damaged.length / 2);
    damaged.fill(0xff, block + 2, Math.min(block + 26, damaged.length - 8));
    replaceDump(runDir, 'site2_blog', damaged, { keepManifestHash: false, kind: 'postgresql' });
  });

  afterAll(() => {
    replaceDump(runDir, 'site2_db', goodMysql, { keepManifestHash: false, kind: 'mysql' });
    replaceDump(runDir, 'site2_blog', goodPg, { keepManifestHash: false, kind: 'postgresql' });
  });

  test('MariaDB --into NEW: the half-loaded NEW is dropped, exit 8, the message says so', async () => {
    const r = await f.cli(['restore', 'db', 'site2_db', '--into', 'site2_new']);
    expect(r.code, r.stderr).toBe(8);
    // The injected statement is what failed: the tables before it had been created and filled.
    expect(r.stderr).toMatch(/mysql restore of 'site2_new' failed: .*syntax/i);
    expect(r.stderr).toMatch(/'site2_new' was dropped again/);
    expect(await mysqlHas('site2_new')).toBe(false);
    expect(lastJournal()).toMatchObject({ command: 'restore db', result: 'failed' });
  });

  test('MariaDB, a dump changed after its manifest entry: refused on its sha256, the map read beside the check stopped, nothing created', async () => {
    const damaged = readFileSync(mysqlFile);
    try {
      replaceDump(runDir, 'site2_db', goodMysql, { keepManifestHash: true, kind: 'mysql' }); // a valid dump, not the one recorded
      const r = await f.cli(['restore', 'db', 'site2_db', '--into', 'site2_changed']);
      expect(r.code, r.stderr).toBe(8);
      expect(r.stderr).toContain(`${mysqlFile} does not match the sha256 its manifest recorded`);
      expect(await mysqlHas('site2_changed')).toBe(false);
      // The read-ahead of its map (prefetch) ended with the CLI: no decompressor left on the file.
      const left = await run(cmd('pgrep', ['-f', mysqlFile]), { exitClass: exitClasses({ ok: [1] }) });
      expect(left.stdout.trim()).toBe('');
    } finally {
      replaceDump(runDir, 'site2_db', damaged, { keepManifestHash: true, kind: 'mysql' });
    }
  });

  test('PostgreSQL --into NEW: the NEW database is dropped, exit 8, the message says so', async () => {
    const r = await f.cli(['restore', 'db', 'site2_blog', '--into', 'site2_blog_new']);
    expect(r.code, r.stderr).toBe(8);
    expect(r.stderr).toMatch(/postgresql restore of 'site2_blog_new' failed: /);
    expect(r.stderr).toMatch(/'site2_blog_new' was dropped again/);
    expect(await pgHas('site2_blog_new')).toBe(false);
  });

  test('PostgreSQL, a dump cut short: it fails at the first look inside, before anything is created; exit 8', async () => {
    const damaged = readFileSync(pgFile);
    try {
      replaceDump(runDir, 'site2_blog', goodPg.subarray(0, Math.floor(goodPg.length * 0.6)), { keepManifestHash: false, kind: 'postgresql' });
      const r = await f.cli(['restore', 'db', 'site2_blog', '--into', 'site2_blog_cut']);
      expect(r.code, r.stderr).toBe(8);
      expect(r.stderr).toMatch(/postgresql restore of 'site2_blog_cut' failed before anything was loaded: .*end of file.*'site2_blog_cut' was not touched \(it was not created\)/);
      expect(await pgHas('site2_blog_cut')).toBe(false);
    } finally {
      replaceDump(runDir, 'site2_blog', damaged, { keepManifestHash: false, kind: 'postgresql' });
    }
  });

  test('--into an existing database is refused without --force: it is not overwritten', async () => {
    await servers.mariadb.sql(`CREATE DATABASE site2_taken; CREATE TABLE site2_taken.keep (id INT PRIMARY KEY); INSERT INTO site2_taken.keep VALUES (7);`);
    await servers.postgres.sql('CREATE DATABASE site2_blog_taken');
    await servers.postgres.sql('CREATE TABLE keep (id int PRIMARY KEY); INSERT INTO keep VALUES (7);', 'site2_blog_taken');
    try {
      const my = await f.cli(['restore', 'db', 'site1_shop', '--into', 'site2_taken']);
      expect(my.code).toBe(8);
      expect(my.stderr).toMatch(/refusing to replace mysql database 'site2_taken': it is not empty/);
      expect((await servers.mariadb.sql('SELECT GROUP_CONCAT(id) FROM site2_taken.keep')).trim()).toBe('7');
      expect((await servers.mariadb.sql(`SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA='site2_taken'`)).trim()).toBe('1');
      const pg = await f.cli(['restore', 'db', 'site3_app', '--into', 'site2_blog_taken']);
      expect(pg.code).toBe(8);
      expect(pg.stderr).toMatch(/refusing to replace postgresql database 'site2_blog_taken': it is not empty/);
      expect((await servers.postgres.sql('SELECT string_agg(id::text, \',\') FROM keep', 'site2_blog_taken')).trim()).toBe('7');
      expect(lastJournal()).toMatchObject({ command: 'restore db', result: 'refused' });
    } finally {
      await servers.mariadb.sql('DROP DATABASE site2_taken');
      await servers.postgres.sql('DROP DATABASE site2_blog_taken');
    }
  });

  test('MariaDB --force over the live database: the safety dump is loaded back (rows, schema, DEFINER) and kept, named in the message', async () => {
    // What the live database holds now differs from the backup: the rollback must bring back THIS.
    await servers.mariadb.sql(`INSERT INTO ${qm('site2_db')}.items VALUES (5000, 'written after the backup', NULL); ALTER TABLE ${qm('site2_db')}.audit ADD COLUMN extra INT DEFAULT 3;`);
    const before = await mysqlContent('site2_db');
    const r = await f.cli(['restore', 'db', 'site2_db', '--force']);
    expect(r.code, r.stderr).toBe(8);
    const safety = /loaded back from the safety dump (\S+), which is kept/.exec(r.stderr)?.[1];
    expect(safety, r.stderr).toBeTruthy();
    expect(r.stderr).toMatch(/'site2_db' holds its previous content again/);
    expect(existsSync(safety!)).toBe(true);
    expect(safetyFiles()).toContain(safety!.split('/').pop());
    expect(await mysqlContent('site2_db')).toEqual(before);
    expect(lastJournal()).toMatchObject({ command: 'restore db', result: 'failed' });
  });

  test('PostgreSQL --force over the live database: the safety dump is loaded back (rows, schema, owners) and kept, named in the message', async () => {
    await servers.postgres.sql(`INSERT INTO items VALUES (5000, 'written after the backup', NULL); ALTER TABLE audit ADD COLUMN extra int DEFAULT 3;`, 'site2_blog');
    const before = await pgContent('site2_blog');
    expect(before.owners).toContain(SITE2_ROLE);
    const r = await f.cli(['restore', 'db', 'site2_blog', '--force']);
    expect(r.code, r.stderr).toBe(8);
    const safety = /loaded back from the safety dump (\S+), which is kept/.exec(r.stderr)?.[1];
    expect(safety, r.stderr).toBeTruthy();
    expect(existsSync(safety!)).toBe(true);
    expect(await pgContent('site2_blog')).toEqual(before);
  });
});
