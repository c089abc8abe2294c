/**
 * A dump that meets a lock or a table changing under it, through the BUILT CLI on real servers:
 * a lock wait is bounded (databases.mysql.lock_wait_timeout: mariadb-dump's waiting statement is
 * ended by our watch), said in the log and by `status` while it lasts, and a timeout fails only
 * that database, naming the table, the holder and the setting; a TRUNCATE, rebuilding ALTER,
 * RENAME or DROP of a table not yet dumped costs one more attempt, not the night; pg_dump's lock
 * timeout names the table and the setting.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ManifestEntry } from '../../../lib/model/manifest.js';
import type { Servers } from '../../../lib/throwaway/servers.js';
import { TABLE_CHANGED_ATTEMPTS } from '../../../lib/dumps/run-dumps.js';
import { sandboxPool, waitFor, type Sandbox } from '../../helpers/sandbox.js';

const pool = sandboxPool({ config: { databases: { postgresql: { include: ['lwpg'] } } } });
let servers: Servers;
let sb: Sandbox;

beforeAll(async () => {
  servers = await pool.start();
  await servers.mariadb.sql(`
    CREATE DATABASE lw_busy; USE lw_busy;
    CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB; INSERT INTO t VALUES (1, 'one'), (2, 'two');
    CREATE DATABASE lw_myisam; USE lw_myisam;
    CREATE TABLE m (id INT PRIMARY KEY) ENGINE=MyISAM; INSERT INTO m VALUES (7);
    CREATE DATABASE lw_other; USE lw_other;
    CREATE TABLE o (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO o VALUES (42);
  `);
  await servers.postgres.sql('CREATE DATABASE lwpg');
  await servers.postgres.sql("CREATE TABLE t (id int primary key, v text); INSERT INTO t VALUES (1, 'pg');", 'lwpg');
  sb = await pool.sandbox({ config: { databases: { mysql: { include: ['lw_*'] } } } });
}, 120_000);

afterAll(() => pool.destroy());

const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');

function entry(s: Sandbox, runId: string, kind: string, database: string): ManifestEntry {
  const e = s.manifest(runId).entries.find((x) => x.kind === kind && x.database === database);
  if (!e) throw new Error(`no manifest entry for ${kind} ${database} in ${runId}`);
  return e;
}

function newestRun(s: Sandbox): string {
  const runs = s.runDirs().filter((n) => !n.endsWith('.inprogress'));
  return runs[runs.length - 1]!;
}

/** The id of the session whose statement starts with `info` (the holder's SLEEP). */
async function sessionRunning(info: string): Promise<number> {
  return waitFor(`a session running ${info}`, async () => {
    const id = (await servers.mariadb.sql(`SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE '${info}%' AND ID <> CONNECTION_ID()`)).trim();
    return id ? Number(id) : undefined;
  });
}

describe('MariaDB lock waits', () => {
  it('a lock held past lock_wait_timeout fails that database within the limit, naming the table, the holder and the setting; the others are dumped and the previous good dump is kept', async () => {
    const good = await sb.cli(['dump']);
    expect(good.exitCode, good.stderr).toBe(0);
    const goodRun = newestRun(sb);
    const goodBusy = entry(sb, goodRun, 'mysql', 'lw_busy');
    const goodFile = join(sb.dumpsDir, goodRun, goodBusy.path!);
    const goodSha = sha256(goodFile);

    sb.writeConfig({ databases: { mysql: { include: ['lw_*'], lock_wait_timeout: '5s' } } });
    // One InnoDB table (single-transaction dump: its SELECT waits) and one MyISAM table (LOCK
    // TABLES dump: its LOCK TABLES waits), each held by another session far longer than the limit.
    const holders = [
      servers.mariadb.sql('LOCK TABLES t WRITE; SELECT SLEEP(40);', 'lw_busy').catch(() => ''),
      servers.mariadb.sql('LOCK TABLES m WRITE; SELECT SLEEP(41);', 'lw_myisam').catch(() => ''),
    ];
    const innoHolder = await sessionRunning('SELECT SLEEP(40)');
    const myisamHolder = await sessionRunning('SELECT SLEEP(41)');
    const started = Date.now();
    const r = await sb.cli(['dump']);
    const took = Date.now() - started;
    for (const id of [innoHolder, myisamHolder]) await servers.mariadb.sql(`KILL ${id}`).catch((e: Error) => console.log(`KILL ${id}: ${e.message}`));
    await Promise.all(holders);

    expect(r.exitCode, r.stderr).toBe(1);
    // The limit is 5 s and the watch looks every 2 s at most once a wait is seen: far from the 40 s hold.
    expect(took).toBeLessThan(20_000);
    const run = newestRun(sb);
    expect(run).not.toBe(goodRun);
    const busy = entry(sb, run, 'mysql', 'lw_busy');
    expect(busy.status).toBe('failed');
    expect(busy.error?.message).toContain('databases.mysql.lock_wait_timeout');
    expect(busy.error?.message).toContain('table `t`');
    expect(busy.error?.message).toContain(`session ${innoHolder} (root@localhost`);
    // Without the metadata_lock_info plugin the server names no holder: said as a likelihood.
    expect(busy.error?.message).toContain('probably held by');
    const myisam = entry(sb, run, 'mysql', 'lw_myisam');
    expect(myisam.status).toBe('failed');
    expect(myisam.lockMode).toBe('lock-tables');
    expect(myisam.error?.message).toContain('table `m`');
    expect(myisam.error?.message).toContain(`session ${myisamHolder} (`);
    expect(myisam.error?.message).toContain('databases.mysql.lock_wait_timeout');
    expect(entry(sb, run, 'mysql', 'lw_other').status).toBe('ok');
    expect(entry(sb, run, 'postgresql', 'lwpg').status).toBe('ok');
    // The failed database's last good dump is where it was, byte for byte.
    expect(sha256(goodFile)).toBe(goodSha);
    expect(busy.path).toBeUndefined();
    const log = readFileSync(sb.logFile, 'utf8');
    expect(log).toMatch(/mysql 'lw_busy': waiting since \S+ for a lock on table `t`/);
    // No statement of the server still waits for the dump's locks.
    expect((await servers.mariadb.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE LIKE 'Waiting for table%'")).trim()).toBe('0');
  }, 120_000);

  it('a lock held 8 s under a 30 s limit: status and the log show the wait with its table and holder while it lasts, then the dump succeeds', async () => {
    sb.writeConfig({ databases: { mysql: { include: ['lw_*'], lock_wait_timeout: '30s' } } });
    // With the plugin loaded the server itself says who holds the lock: the holder is proven.
    await servers.mariadb.sql("INSTALL SONAME 'metadata_lock_info'");
    try {
      // The holder keeps its lock until the test has seen the wait (about 8 s in all: the dump's
      // start, the 5 s before a wait is said, a status call); then its SLEEP is ended (KILL
      // QUERY: the client stops at the error and its session ends, the lock with it).
      const holder = servers.mariadb.sql('LOCK TABLES t WRITE; SELECT SLEEP(25);', 'lw_busy').catch((e: Error) => e.message);
      const holderId = await sessionRunning('SELECT SLEEP(25)');
      const heldFrom = Date.now();
      const child = sb.spawnCli(['dump']);
      const seen = await waitFor(
        'status showing the lock wait',
        async () => {
          const st = await sb.cli(['--json', 'status']);
          const json = JSON.parse(st.stdout) as { running?: { lockWaits?: Record<string, { table?: string; holder?: { id: number; proven: boolean } }> } | null };
          const wait = json.running?.lockWaits?.["mysql 'lw_busy'"];
          return wait ? { wait, text: (await sb.cli(['status'])).stdout } : undefined;
        },
        15_000,
        300,
      );
      expect(seen.wait.table).toBe('`t`');
      expect(seen.wait.holder).toMatchObject({ id: holderId, proven: true });
      expect(seen.text).toContain(`mysql 'lw_busy': waiting since`);
      expect(seen.text).toContain(`held by session ${holderId} (root@localhost`);
      await servers.mariadb.sql(`KILL QUERY ${holderId}`);
      expect(Date.now() - heldFrom).toBeLessThan(20_000);
      const r = await child.catch((e: { exitCode: number; stderr: string }) => e);
      expect(r.exitCode, String(r.stderr)).toBe(0);
      expect(await holder).toContain('Query execution was interrupted');
      const run = newestRun(sb);
      const busy = entry(sb, run, 'mysql', 'lw_busy');
      expect(busy.status).toBe('ok');
      const dumped = (await execa('zstd', ['-dc', join(sb.dumpsDir, run, busy.path!)])).stdout;
      expect(dumped).toMatch(/INSERT INTO `t` VALUES\s*\(1,'one'\),\s*\(2,'two'\);/);
      const log = readFileSync(sb.logFile, 'utf8');
      expect(log).toContain(`held by session ${holderId} (root@localhost`);
      expect(log).toMatch(/mysql 'lw_busy': the lock wait on table `t` ended after \d+ s/);
      // The wait is gone from running.json once it ended, and the file with the run.
      expect(existsSync(join(sb.stateDir, 'running.json'))).toBe(false);
    } finally {
      await servers.mariadb.sql("UNINSTALL SONAME 'metadata_lock_info'");
    }
  }, 120_000);
});

describe('a table changed under the dump is dumped again from a new snapshot', () => {
  let ddl: Sandbox;
  beforeAll(async () => {
    // a_big is dumped first (mariadb-dump goes by name) and slowly (dumps.max_rate): the DDL
    // lands after the dump's snapshot and table list, before it reaches the z_ tables. Its rows
    // do not compress (random hex): a database whose last dump was small (< 1 MiB compressed) is
    // dumped to a file at full speed and paced afterwards, so each case after the first would race
    // the DDL instead of waiting for it.
    const hex = Array.from({ length: 8 }, () => 'SHA2(RAND(), 512)').join(', ');
    await servers.mariadb.sql(`
      CREATE DATABASE lw_ddl; USE lw_ddl;
      CREATE TABLE a_big (id INT PRIMARY KEY, pad VARCHAR(1000)) ENGINE=InnoDB;
      INSERT INTO a_big SELECT seq, LEFT(CONCAT(${hex}), 1000) FROM seq_1_to_12000;
      CREATE TABLE z_trunc (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO z_trunc SELECT seq FROM seq_1_to_100;
      CREATE TABLE z_alter (id INT PRIMARY KEY, v INT) ENGINE=InnoDB; INSERT INTO z_alter SELECT seq, seq FROM seq_1_to_100;
      CREATE TABLE z_ren (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO z_ren VALUES (1), (2);
      CREATE TABLE z_drop (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO z_drop VALUES (3);
    `);
    ddl = await pool.sandbox({ config: { dumps: { max_rate: '3M' }, databases: { mysql: { include: ['lw_ddl'] }, postgresql: { enabled: false } } } });
  }, 60_000);

  /** CHECKSUM TABLE of every base table of `db`, by name. */
  async function checksums(db: string): Promise<Record<string, string>> {
    const out = await servers.mariadb.sql(`SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '${db}' AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME`);
    const result: Record<string, string> = {};
    for (const name of out.split('\n').filter(Boolean)) result[name] = (await servers.mariadb.sql(`CHECKSUM TABLE \`${db}\`.\`${name}\` EXTENDED`)).trim().split('\t').pop()!;
    return result;
  }

  const cases: readonly [string, string, RegExp][] = [
    ['TRUNCATE', 'TRUNCATE TABLE z_trunc', /definition changed under the dump \(1412/],
    ['a rebuilding ALTER', 'ALTER TABLE z_alter ENGINE=InnoDB', /definition changed under the dump \(1412/],
    ['RENAME', 'RENAME TABLE z_ren TO z_ren2', /vanished during the dump/],
    ['DROP', 'DROP TABLE z_drop', /vanished during the dump/],
  ];
  for (const [name, statement, why] of cases) {
    it(`${name} of a table not yet dumped: the dump succeeds after a retry and loads back equal to the database`, async () => {
      const child = ddl.spawnCli(['dump']);
      // The dump is reading a_big: its snapshot and table list are taken.
      await waitFor('the dump reading a_big', async () => (await servers.mariadb.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT /*!40001 SQL_NO_CACHE */%FROM `a_big`'")).trim() === '1', 20_000, 50);
      await servers.mariadb.sql(statement, 'lw_ddl');
      const r = await child.catch((e: { exitCode: number; stderr: string }) => e);
      expect(r.exitCode, String(r.stderr)).toBe(0);
      const run = newestRun(ddl);
      const e = entry(ddl, run, 'mysql', 'lw_ddl');
      expect(e.status).toBe('ok');
      expect(e.details?.attempts).toBe(2);
      expect(String((e.details?.retriedFor as string[])[0])).toMatch(why);
      const log = readFileSync(ddl.logFile, 'utf8');
      expect(log).toContain(`mysql 'lw_ddl': attempt 1 of 3 failed`);
      // The dump is the database as it is now (nothing writes to it any more): load it into a
      // new database and compare every table's checksum with the server's own.
      await servers.mariadb.sql('DROP DATABASE IF EXISTS lw_ddl_back; CREATE DATABASE lw_ddl_back');
      await execa('sh', ['-c', `zstd -dc "$1" | mariadb --no-defaults --socket="$2" --user=root lw_ddl_back`, 'sh', join(ddl.dumpsDir, run, e.path!), servers.mariadb.socket]);
      const [original, loaded] = [await checksums('lw_ddl'), await checksums('lw_ddl_back')];
      expect(Object.keys(loaded)).toEqual(Object.keys(original));
      expect(loaded).toEqual(original);
    }, 120_000);
  }
});

describe('a table that keeps changing', () => {
  it(`fails its database after ${TABLE_CHANGED_ATTEMPTS} attempts, the message naming each attempt's cause; the other databases are dumped`, async () => {
    const sbx = await pool.sandbox({ config: { dumps: { max_rate: '3M' }, databases: { mysql: { include: ['lw_ddl', 'lw_other'] }, postgresql: { enabled: false } } } });
    const child = sbx.spawnCli(['dump']);
    // A cache table emptied every half second: every attempt's snapshot sees it change.
    let stop = false;
    const churn = (async () => {
      while (!stop) {
        await servers.mariadb.sql('TRUNCATE TABLE z_trunc', 'lw_ddl');
        await new Promise((r) => setTimeout(r, 500));
      }
    })();
    const r = await child.catch((e: { exitCode: number; stderr: string }) => e);
    stop = true;
    await churn;
    expect(r.exitCode).toBe(1);
    const run = newestRun(sbx);
    const e = entry(sbx, run, 'mysql', 'lw_ddl');
    expect(e.status).toBe('failed');
    expect(e.details?.attempts).toBe(TABLE_CHANGED_ATTEMPTS);
    expect(e.error?.message).toMatch(/^failed 3 times, each time because a table changed under the dump \(attempt 1: table `z_trunc`: .*1412.*; 2: table `z_trunc`: .*; 3: table `z_trunc`: .*\); last error: mariadb-dump/);
    expect(entry(sbx, run, 'mysql', 'lw_other').status).toBe('ok');
    const log = readFileSync(sbx.logFile, 'utf8');
    expect(log).toContain(`mysql 'lw_ddl': attempt 1 of 3 failed`);
    expect(log).toContain(`mysql 'lw_ddl': attempt 2 of 3 failed`);
    expect(log).toContain(`mysql 'lw_ddl' failed: failed 3 times`);
  }, 120_000);
});

describe('PostgreSQL lock timeout', () => {
  it("pg_dump's lock timeout names the table and the setting", async () => {
    const pg = await pool.sandbox({ config: { databases: { mysql: { enabled: false }, postgresql: { include: ['lwpg'], lock_wait_timeout: '2s' } } } });
    const holder = servers.postgres.sql('BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(8); COMMIT;', 'lwpg');
    await waitFor('the lock held', async () => (await servers.postgres.sql("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 't' AND l.mode = 'AccessExclusiveLock' AND l.granted", 'lwpg')).trim() === '1');
    const r = await pg.cli(['dump']);
    await holder;
    expect(r.exitCode, r.stderr).toBe(1);
    const e = entry(pg, newestRun(pg), 'postgresql', 'lwpg');
    expect(e.status).toBe('failed');
    expect(e.error?.message).toContain('databases.postgresql.lock_wait_timeout');
    expect(e.error?.message).toContain('table public.t');
    expect(e.error?.message).not.toContain('canceling statement due to statement timeout');
  }, 60_000);
});
