import { existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Manifest } from '../../lib/model/manifest.js';
import { startServers, type Servers } from '../../lib/throwaway/servers.js';
import { dumpEntry, readRunManifest, replaceDump } from '../helpers/dump-files.js';
import { assertBuilt, mysqlFingerprint, pgFingerprint, rmrf, stopServers } from '../helpers/e2e.js';
import { createRestoreFixture, seedSiteDatabases, type RestoreFixture } from '../helpers/restore-fixture.js';

// A restore proves itself (issue 26 item 4): `restore db` and `restore site` compare what they
// loaded with the inventory the server had at dump time, through the BUILT CLI against real
// MariaDB and PostgreSQL servers. The dump that comes back different is a real dump of the same
// database taken after rows were deleted, put in place of the first one with its sha256 and size
// recomputed: whole, with its own trailer and checks intact, so only the inventory comparison
// can see that it holds less than the server had. The manifest's inventory is never edited
// (except where a test removes it, to be a run from before inventories).

const base = mkdtempSync(join(tmpdir(), 'restore-proves-'));
let servers: Servers;
let f: RestoreFixture;
/** The run whose dumps are restored: its inventory is what the servers held at dump time. */
let runA: string;
let runDir: string;

const MY = 'site1_shop';
const PG = 'site3_app';
const DEFINER = "'proof_def'@'localhost'";
const accountExists = async (): Promise<boolean> => (await servers.mariadb.sql("SELECT COUNT(*) FROM mysql.user WHERE User = 'proof_def'")).trim() === '1';
/** What the ORIGINAL servers hold at dump time, read from their own catalogs. */
let myAtDump: { tables: number; views: number; triggers: number; rows: number; items: number };
let pgAtDump: { relations: number; tables: number; rows: number; items: number };

beforeAll(async () => {
  assertBuilt();
  servers = await startServers();
  await seedSiteDatabases(servers);
  // A view whose DEFINER is an account of its own: a restore that needs it creates it, and one
  // that fails must drop it again.
  await servers.mariadb.sql(`CREATE USER ${DEFINER} IDENTIFIED BY 'pw'; GRANT SELECT ON ${MY}.* TO ${DEFINER};
    CREATE DEFINER=${DEFINER} SQL SECURITY DEFINER VIEW ${MY}.def_view AS SELECT id FROM ${MY}.items;`);
  f = await createRestoreFixture(base, 'none', servers);
  const r = await f.cli(['run']);
  expect(r.code, r.stderr).toBe(0);
  runA = readlinkSync(join(f.loaded.paths.dumpsDir, 'latest'));
  runDir = join(f.loaded.paths.dumpsDir, runA);
  myAtDump = await mysqlCatalog(MY);
  pgAtDump = await pgCatalog(PG);
});

afterAll(async () => {
  await stopServers(servers);
  rmrf(base);
});

const num = async (p: Promise<string>): Promise<number> => Number((await p).trim());

async function mysqlCatalog(db: string): Promise<typeof myAtDump> {
  const my = servers.mariadb;
  const tables = (await my.sql(`SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA='${db}' AND TABLE_TYPE='BASE TABLE'`)).split('\n').filter(Boolean);
  let rows = 0;
  for (const t of tables) rows += await num(my.sql(`SELECT COUNT(*) FROM \`${db}\`.\`${t}\``));
  return {
    tables: tables.length,
    views: await num(my.sql(`SELECT COUNT(*) FROM information_schema.VIEWS WHERE TABLE_SCHEMA='${db}'`)),
    triggers: await num(my.sql(`SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA='${db}'`)),
    rows,
    items: await num(my.sql(`SELECT COUNT(*) FROM \`${db}\`.items`)),
  };
}

async function pgCatalog(db: string): Promise<typeof pgAtDump> {
  const pg = servers.postgres;
  const userRel = `FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'`;
  const tables = (await pg.sql(`SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) ${userRel} AND c.relkind = 'r'`, db)).split('\n').filter(Boolean);
  let rows = 0;
  for (const t of tables) rows += await num(pg.sql(`SELECT count(*) FROM ${t}`, db));
  return {
    relations: await num(pg.sql(`SELECT count(*) ${userRel} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')`, db)),
    tables: tables.length,
    rows,
    items: await num(pg.sql('SELECT count(*) FROM items', db)),
  };
}

const mysqlHas = async (db: string): Promise<boolean> => (await servers.mariadb.sql(`SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME='${db}'`)).trim() === '1';
const pgHas = async (db: string): Promise<boolean> => (await servers.postgres.sql(`SELECT count(*) FROM pg_database WHERE datname = '${db}'`)).trim() === '1';
const myContent = async (db: string): Promise<Record<string, string>> => ({
  ...(await mysqlFingerprint(servers.mariadb, db)),
  checksums: await servers.mariadb.sql(`CHECKSUM TABLE \`${db}\`.items, \`${db}\`.audit EXTENDED`),
});
const pgContent = (db: string): Promise<Record<string, string>> => pgFingerprint(servers.postgres, db);
const lastJournal = (): Record<string, any> => JSON.parse(readFileSync(join(f.loaded.paths.stateDir, 'restores.jsonl'), 'utf8').trim().split('\n').at(-1)!) as Record<string, any>;
const plural = (n: number, one: string, many: string): string => `${n} ${n === 1 ? one : many}`;

describe('a restore that agrees with the backup says what it compared', () => {
  test('MariaDB --into: exit 0, the comparison counted the tables, views, triggers and rows the original server has', async () => {
    const r = await f.cli(['restore', 'db', MY, '--from', runA, '--into', 'proof_my_copy']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(
      `compared with the backup's inventory (recorded at dump time): as dumped: ${plural(myAtDump.tables, 'table', 'tables')}, ${plural(myAtDump.views, 'view', 'views')}, ${plural(myAtDump.triggers, 'trigger', 'triggers')}, 1 database property; exact rows of ${plural(myAtDump.tables, 'table', 'tables')} (${myAtDump.rows} rows)`,
    );
    // The premise: the counts are real (two tables filled, two views, a trigger).
    expect(myAtDump).toMatchObject({ tables: 2, views: 2, triggers: 1 });
    expect(myAtDump.rows).toBeGreaterThan(40);
    // What the restore compared is what the copy holds: the same catalog numbers.
    expect(await mysqlCatalog('proof_my_copy')).toEqual(myAtDump);
    const j = lastJournal();
    expect(j).toMatchObject({ command: 'restore db', result: 'ok', runId: runA });
    expect(j.comparisons['mysql:proof_my_copy']).toMatchObject({ compared: true, problems: [], tablesCounted: myAtDump.tables, rows: myAtDump.rows, objects: { tables: myAtDump.tables, views: myAtDump.views, triggers: myAtDump.triggers } });
  });

  test('PostgreSQL --into (--json): exit 0, the comparison counted the relations and rows of pg_class', async () => {
    const r = await f.cli(['--json', 'restore', 'db', PG, '--from', runA, '--into', 'proof_pg_copy']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { proof: { compared: boolean; problems: string[]; objects: Record<string, number>; tablesCounted: number; rows: number } };
    expect(pgAtDump.tables).toBe(2);
    expect(pgAtDump.relations).toBeGreaterThan(pgAtDump.tables); // a view and a sequence too
    expect(out.proof).toMatchObject({ compared: true, problems: [], tablesCounted: pgAtDump.tables, rows: pgAtDump.rows });
    expect(out.proof.objects.relations).toBe(pgAtDump.relations);
    expect(await pgCatalog('proof_pg_copy')).toEqual(pgAtDump);
    expect(lastJournal().comparisons['postgresql:proof_pg_copy']).toMatchObject({ compared: true, tablesCounted: pgAtDump.tables, rows: pgAtDump.rows });
  });

  test('a run without a recorded inventory (an older manifest): restored, "not compared: the run has no inventory", exit 0', async () => {
    const manifestFile = join(runDir, 'manifest.json');
    const original = readFileSync(manifestFile);
    try {
      const m = readRunManifest(runDir);
      const entries = m.entries.map((e) => (e.kind === 'mysql' && e.database === MY ? { ...e, inventory: undefined } : e));
      writeFileSync(manifestFile, JSON.stringify({ ...m, entries } satisfies Manifest, null, 2));
      const r = await f.cli(['restore', 'db', MY, '--from', runA, '--into', 'proof_my_noinv']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/not compared: the run has no inventory/);
      expect(await mysqlCatalog('proof_my_noinv')).toEqual(myAtDump);
      expect(lastJournal().comparisons['mysql:proof_my_noinv']).toMatchObject({ compared: false });
    } finally {
      writeFileSync(manifestFile, original);
    }
  });
});

describe('a restore that comes back different from the dump-time inventory', () => {
  const DELETED = 3;
  let goodMy: Buffer;
  let goodPg: Buffer;

  beforeAll(async () => {
    goodMy = readFileSync(join(runDir, dumpEntry(runDir, MY, 'mysql').path!));
    goodPg = readFileSync(join(runDir, dumpEntry(runDir, PG, 'postgresql').path!));
    // A second, whole dump of the same databases with three rows fewer...
    await servers.mariadb.sql(`DELETE FROM ${MY}.items WHERE id IN (10, 11, 12)`);
    await servers.postgres.sql('DELETE FROM items WHERE id IN (10, 11, 12)', PG);
    const r = await f.cli(['dump']);
    expect(r.code, r.stderr).toBe(0);
    const runB = join(f.loaded.paths.dumpsDir, readlinkSync(join(f.loaded.paths.dumpsDir, 'latest')));
    expect(runB).not.toBe(runDir);
    // ...in place of the first run's (sha256 and size follow; the inventory stays the server's at the first dump).
    for (const [db, kind] of [[MY, 'mysql'], [PG, 'postgresql']] as const) {
      const later = dumpEntry(runB, db, kind);
      expect(later.map).toBeUndefined(); // small dumps: no map beside them to keep in step
      replaceDump(runDir, db, readFileSync(join(runB, later.path!)), { keepManifestHash: false, kind });
    }
    rmSync(runB, { recursive: true });
    // The live databases move on again: they now differ from both dumps, so a rollback that
    // left either dump's content behind would show.
    await servers.mariadb.sql(`INSERT INTO ${MY}.items VALUES (10, 'back', NULL), (11, 'back', NULL), (12, 'back', NULL), (9000, 'after the backup', NULL)`);
    await servers.postgres.sql(`INSERT INTO items VALUES (10, 'back', NULL), (11, 'back', NULL), (12, 'back', NULL), (9000, 'after the backup', NULL)`, PG);
  });

  afterAll(() => {
    replaceDump(runDir, MY, goodMy, { keepManifestHash: false, kind: 'mysql' });
    replaceDump(runDir, PG, goodPg, { keepManifestHash: false, kind: 'postgresql' });
  });

  const myRows = (): RegExp => new RegExp(`rows differ: 'items' ${myAtDump.items} at dump time, ${myAtDump.items - DELETED} loaded`);
  const pgRows = (): RegExp => new RegExp(`rows differ: 'public\\.items' ${pgAtDump.items} at dump time, ${pgAtDump.items - DELETED} loaded`);

  test('the premise: the replaced dumps pass every check of their own (verify --all finds only the row counts)', async () => {
    const r = await f.cli(['verify', '--run', runA, '--all']);
    expect(r.code).toBe(9);
    expect(r.stderr).toMatch(myRows());
    expect(r.stderr).toMatch(pgRows());
    expect(r.stderr).not.toMatch(/sha256|does not load/);
  });

  test('MariaDB --into NEW: exit 8 naming the table and both counts; NEW is dropped again; restores.jsonl holds the comparison', async () => {
    const r = await f.cli(['restore', 'db', MY, '--from', runA, '--into', 'proof_my_bad']);
    expect(r.code, r.stderr).toBe(8);
    expect(r.stderr).toMatch(/mysql restore of 'proof_my_bad' failed: what it loaded differs from the backup \(the inventory recorded at dump time\)/);
    expect(r.stderr).toMatch(myRows());
    expect(r.stderr).toMatch(/'proof_my_bad' was dropped again/);
    expect(r.stdout).not.toMatch(/restored/);
    expect(await mysqlHas('proof_my_bad')).toBe(false);
    const j = lastJournal();
    expect(j).toMatchObject({ command: 'restore db', result: 'failed' });
    expect(j.comparisons['mysql:proof_my_bad'].compared).toBe(true);
    expect(j.comparisons['mysql:proof_my_bad'].problems.join()).toMatch(myRows());
  });

  test('PostgreSQL --into NEW: exit 8 naming the table and both counts; NEW is dropped again', async () => {
    const r = await f.cli(['restore', 'db', PG, '--from', runA, '--into', 'proof_pg_bad']);
    expect(r.code, r.stderr).toBe(8);
    expect(r.stderr).toMatch(/postgresql restore of 'proof_pg_bad' failed: what it loaded differs from the backup/);
    expect(r.stderr).toMatch(pgRows());
    expect(r.stderr).toMatch(/'proof_pg_bad' was dropped again/);
    expect(await pgHas('proof_pg_bad')).toBe(false);
    expect(lastJournal().comparisons['postgresql:proof_pg_bad'].problems.join()).toMatch(pgRows());
  });

  test('MariaDB --force over the live database: exit 8, the safety dump loaded back (said so), the live content exactly as before', async () => {
    const before = await myContent(MY);
    const r = await f.cli(['restore', 'db', MY, '--from', runA, '--force']);
    expect(r.code, r.stderr).toBe(8);
    expect(r.stderr).toMatch(myRows());
    const safety = /loaded back from the safety dump (\S+), which is kept/.exec(r.stderr)?.[1];
    expect(safety, r.stderr).toBeTruthy();
    expect(existsSync(safety!)).toBe(true);
    expect(await myContent(MY)).toEqual(before);
  });

  test('PostgreSQL --force over the live database: exit 8, the safety dump loaded back, the live content exactly as before', async () => {
    const before = await pgContent(PG);
    const r = await f.cli(['restore', 'db', PG, '--from', runA, '--force']);
    expect(r.code, r.stderr).toBe(8);
    expect(r.stderr).toMatch(pgRows());
    expect(r.stderr).toMatch(/'site3_app' holds its previous content again: loaded back from the safety dump \S+, which is kept/);
    expect(await pgContent(PG)).toEqual(before);
  });

  test('restore site --databases --in-place makes the same comparison per database: exit 8, the live database as before', async () => {
    const before = await myContent(MY);
    const r = await f.cli(['restore', 'site', 'site1', '--databases', '--in-place', '--from', runA]);
    expect(r.code, r.stderr).toBe(8);
    expect(r.stderr).toMatch(myRows());
    expect(r.stderr).toMatch(/'site1_shop' holds its previous content again/);
    expect(await myContent(MY)).toEqual(before);
    const j = lastJournal();
    expect(j).toMatchObject({ command: 'restore site', result: 'failed' });
    expect(j.comparisons['mysql:site1_shop'].problems.join()).toMatch(myRows());
  });

  test('a same-name restore into a database that did not exist: exit 8, the database and the account it created are dropped again', async () => {
    // The site's database and its view's DEFINER account are gone: the restore creates both.
    await servers.mariadb.sql(`DROP DATABASE ${MY}; DROP USER ${DEFINER}`);
    const my = await f.cli(['restore', 'db', MY, '--from', runA]);
    expect(my.code, my.stderr).toBe(8);
    expect(my.stderr).toMatch(myRows());
    expect(my.stderr).toMatch(/'site1_shop' was dropped again/);
    expect(my.stderr).toMatch(/the account\(s\) it had created were dropped again: .*proof_def/);
    expect(await mysqlHas(MY)).toBe(false);
    expect(await accountExists()).toBe(false);
    expect(lastJournal().comparisons['mysql:site1_shop'].problems.join()).toMatch(myRows());
    await servers.postgres.sql(`DROP DATABASE ${PG}`);
    const pg = await f.cli(['restore', 'db', PG, '--from', runA]);
    expect(pg.code, pg.stderr).toBe(8);
    expect(pg.stderr).toMatch(pgRows());
    expect(await pgHas(PG)).toBe(false);
  });
});
