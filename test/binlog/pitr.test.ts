import { type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startMariadb, type MariadbServer } from '../../lib/throwaway/mariadb.js';
import type { Manifest } from '../../lib/model/manifest.js';
import { assertBuilt, cli, rmrf, type CliResult } from '../helpers/e2e.js';
import { loadConfig } from '../../lib/config/load.js';
import { memoryLogger } from '../../lib/log.js';
import { binlogStep, UNIT_NAME } from '../../lib/install/binlog-unit.js';
import { binlogSeq, localBinlogs } from '../../lib/binlog/store.js';
import { binlogRemovals, listRuns } from '../../lib/dumps/retention.js';

// Point-in-time restore of one MariaDB database (issue 29), through the built CLI against a real
// server with binary logs on: a workload over three databases (inserts, updates, deletes, DDL, a
// transaction across two tables, binlog rotation), the ORIGINAL server's checksums and table
// definitions recorded at known moments, then `restore db --at` each moment compared with them;
// the follower killed and restarted, the server restarted while followed, a missing binlog copy,
// a moment before the oldest dump, a statement the per-database filter would get wrong.

const base = mkdtempSync(join(tmpdir(), 'pitr-'));
const root = join(base, 'root');
const config = join(base, 'config.yaml');
let my: MariadbServer;
let follower: { child?: ChildProcess; done: Promise<CliResult> } | undefined;

const run = (args: readonly string[]): Promise<CliResult> => cli(['--config', config, ...args]);
const qm = (n: string): string => '`' + n.replace(/`/g, '``') + '`';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Every table's definition (AUTO_INCREMENT counters aside) and CHECKSUM TABLE, from the server
 * itself, in two client calls (a moment's state must be read within its second, on a busy machine).
 */
async function states(dbs: readonly string[]): Promise<Record<string, Record<string, string>>> {
  const tables = (await my.sql(`SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA IN (${dbs.map((d) => `'${d}'`).join(',')}) ORDER BY TABLE_SCHEMA, TABLE_NAME`))
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split('\t') as [string, string]);
  const out: Record<string, Record<string, string>> = Object.fromEntries(dbs.map((d) => [d, {}]));
  if (!tables.length) return out;
  // Batch mode prints each result on one line (newlines in values escaped): two lines per table.
  const lines = (await my.sql(tables.map(([d, t]) => `SHOW CREATE TABLE ${qm(d)}.${qm(t)}; CHECKSUM TABLE ${qm(d)}.${qm(t)} EXTENDED;`).join('\n'))).trim().split('\n');
  expect(lines).toHaveLength(2 * tables.length);
  for (const [i, [d, t]] of tables.entries()) {
    const create = lines[2 * i]!.split('\t').slice(1).join('\t').replace(/ AUTO_INCREMENT=\d+/, '');
    const sum = lines[2 * i + 1]!.split('\t').pop()!;
    out[d]![t] = `${create}\n${sum}`;
  }
  return out;
}

async function state(db: string): Promise<Record<string, string>> {
  return (await states([db]))[db]!;
}

/** Waits into the next second, a little past its start: a moment no write shares. */
async function nextSecond(): Promise<number> {
  await sleep(1000 - (Date.now() % 1000) + 100);
  return Math.floor(Date.now() / 1000) * 1000;
}

/** Local `YYYY-MM-DD HH:MM:SS`, as an admin types --at. */
function local(ms: number): string {
  const d = new Date(ms);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

interface Moment {
  readonly at: number;
  readonly shop: Record<string, string>;
  readonly blog: Record<string, string>;
}

/** A moment between writes: its second is quiet, the state is read in it, the next writes wait for the next second. */
async function moment(): Promise<Moment> {
  const at = await nextSecond();
  const { shop, blog } = await states(['shop', 'blog']);
  const m = { at, shop: shop!, blog: blog! };
  expect(Date.now() - at, 'the state was read within its second').toBeLessThan(900);
  await nextSecond();
  return m;
}

function startFollower(): void {
  let child: ChildProcess | undefined;
  const done = cli(['--config', config, 'binlog', 'follow', '--tick', '1'], { onSpawn: (c) => (child = c) });
  follower = { child, done };
  follower.child = child;
}

async function stopFollower(signal: NodeJS.Signals = 'SIGTERM'): Promise<CliResult | undefined> {
  const f = follower;
  follower = undefined;
  if (!f) return undefined;
  f.child?.kill(signal);
  return f.done;
}

const binlogDir = (): string => join(root, 'var/backup/apiscp-backup/binlog');

/** Until the follower's copy holds everything the server has written. */
async function caughtUp(): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const [file, pos] = (await my.sql('SHOW MASTER STATUS')).trim().split('\t');
    const copy = join(binlogDir(), file!);
    if (existsSync(copy) && readFileSync(copy).length >= Number(pos)) return;
    if (Date.now() > deadline) throw new Error(`the follower did not copy ${file} up to ${pos}`);
    await sleep(200);
  }
}

/** The manifests of the runs in dumps.dir, oldest first. */
function runManifests(): Manifest[] {
  const dir = join(root, 'var/backup/apiscp-backup');
  return readdirSync(dir)
    .filter((n) => /^\d{8}T\d{6}Z(-\d+)?$/.test(n))
    .sort()
    .map((n) => JSON.parse(readFileSync(join(dir, n, 'manifest.json'), 'utf8')) as Manifest);
}

/** The pids of a process's binlog-copying children (/proc; its short-lived queries aside). */
function copierPids(pid: number): number[] {
  return readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .filter((n) => {
      try {
        const [comm, rest] = readFileSync(`/proc/${n}/stat`, 'utf8').split(') ');
        return Number(rest!.split(' ')[1]) === pid && /\((mariadb-binlog|mysqlbinlog)$/.test(comm!);
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** Whether a pid is a live process (not a zombie). */
function alive(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0] !== 'Z';
  } catch {
    return false;
  }
}

const moments: Moment[] = [];
let afterRestart: Moment | undefined;
let beforeDump = 0;
let dropEvent = '';
let firstDumpPosition: { file: string; position: number } | undefined;

beforeAll(async () => {
  assertBuilt();
  my = await startMariadb({ serverArgs: ['--log-bin=bin', '--binlog-format=ROW', '--server-id=1'] });
  mkdirSync(root, { recursive: true });
  writeFileSync(
    config,
    JSON.stringify({ engine: 'none', paths: { root }, panel: { enabled: false }, databases: { mysql: { enabled: true, socket: my.socket, defaults_file: join(root, 'no-my.cnf') }, postgresql: { enabled: false } }, lock: { wait: '5s' } }, null, 2),
    { mode: 0o600 },
  );
  await my.sql(`CREATE DATABASE shop; CREATE DATABASE blog; CREATE DATABASE other;
    USE other;
    CREATE TABLE shop.items (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(40), price DECIMAL(8,2)) ENGINE=InnoDB;
    CREATE TABLE shop.orders (id INT PRIMARY KEY AUTO_INCREMENT, item INT, qty INT) ENGINE=InnoDB;
    CREATE TABLE blog.posts (id INT PRIMARY KEY AUTO_INCREMENT, title VARCHAR(40)) ENGINE=InnoDB;
    CREATE TABLE other.t (id INT PRIMARY KEY) ENGINE=InnoDB;
    INSERT INTO shop.items (name, price) SELECT CONCAT('item ', seq), seq * 1.5 FROM seq_1_to_200;
    INSERT INTO blog.posts (title) SELECT CONCAT('post ', seq) FROM seq_1_to_50;
    INSERT INTO other.t SELECT seq FROM seq_1_to_10;
    CREATE DATABASE legacy; CREATE TABLE legacy.big (id INT PRIMARY KEY, body TEXT) ENGINE=MyISAM;
    INSERT INTO legacy.big SELECT seq, REPEAT(MD5(seq), 16) FROM seq_1_to_40000;`);
  beforeDump = await nextSecond();
  await nextSecond();
  const [file, position] = (await my.sql('SHOW MASTER STATUS')).trim().split('\t');
  firstDumpPosition = { file: file!, position: Number(position) };
  const d = await run(['dump']);
  expect(d.code, d.stderr).toBe(0);
  startFollower();
  await caughtUp();

  // The site's application works in its own database (the client's default database), as
  // statement events (DDL) must for a per-database replay.
  // 1: inserts and updates in shop and blog.
  await my.sql(`INSERT INTO shop.items (name, price) VALUES ('late', 9.99); UPDATE shop.items SET price = price + 1 WHERE id <= 20; INSERT INTO blog.posts (title) VALUES ('hello');`, 'shop');
  moments.push(await moment());

  // The server restarts while followed (a new binlog file): the same follower, not restarted by
  // us, copies what is written after it; a moment there is reached from the first dump, across
  // the restart. Then a second dump.
  const followerBefore = follower!.child!;
  await my.stop();
  await my.start();
  await my.sql(`DELETE FROM shop.items WHERE id BETWEEN 30 AND 39; UPDATE blog.posts SET title = 'edited' WHERE id = 1;`, 'shop');
  await caughtUp();
  expect(followerBefore.exitCode, 'the follower went on through the server restart').toBeNull();
  expect(follower!.child).toBe(followerBefore);
  afterRestart = await moment();
  const d2 = await run(['dump']);
  expect(d2.code, d2.stderr).toBe(0);
  await nextSecond();

  // 2: DDL, a rotation, a transaction across two tables.
  await my.sql(`ALTER TABLE items ADD COLUMN note VARCHAR(20) DEFAULT 'n'; FLUSH BINARY LOGS;
    START TRANSACTION; INSERT INTO shop.orders (item, qty) VALUES (1, 3), (2, 5); UPDATE shop.items SET price = price - 1 WHERE id IN (1, 2); COMMIT;
    INSERT INTO other.t VALUES (100);`, 'shop');
  moments.push(await moment());

  // The follower is killed; writes go on; it starts again.
  const copier = copierPids(follower!.child!.pid!);
  expect(copier, 'the follower runs its copying child').toHaveLength(1);
  await stopFollower('SIGKILL');
  await my.sql(`UPDATE shop.items SET note = 'mass' WHERE id > 0; INSERT INTO blog.posts (title) VALUES ('while down'); FLUSH BINARY LOGS; DELETE FROM shop.orders WHERE qty = 3;`, 'shop');
  moments.push(await moment());
  startFollower();
  await caughtUp();
  // The killed follower's copying child, orphaned, must not go on writing beside the new one's
  // (the server drops a replication client when another connects with the same server id).
  for (let i = 0; alive(copier[0]!); i++) {
    if (i > 100) throw new Error(`the killed follower's mariadb-binlog (pid ${copier[0]}) still runs beside the new follower's`);
    await sleep(100);
  }

  // The bad event: a table dropped.
  await my.sql('DROP TABLE orders', 'shop');
  moments.push(await moment());
  await caughtUp();
}, 600_000);

afterAll(async () => {
  await stopFollower();
  await my?.destroy();
  rmrf(base);
});

describe('point-in-time restore of one MariaDB database', () => {
  test('each dump records the binlog position of its snapshot, as the server reported it; list RUN shows it', async () => {
    const runs = runManifests();
    expect(runs).toHaveLength(2);
    const first = runs[0]!.entries.find((e) => e.database === 'shop')!;
    expect(first.binlog).toMatchObject({ file: firstDumpPosition!.file, position: firstDumpPosition!.position, method: 'snapshot' });
    expect(first.binlog!.gtid).toMatch(/^0-1-\d+$/);
    for (const m of runs) for (const e of m.entries.filter((x) => x.object === 'database')) expect(e.binlog, `${m.runId} ${e.database}`).toBeDefined();
    // A MyISAM database is dumped under LOCK TABLES: its position is read while the locks are held.
    const legacy = runs[0]!.entries.find((e) => e.database === 'legacy')!;
    expect(legacy.lockMode).toBe('lock-tables');
    expect(legacy.binlog).toMatchObject({ file: firstDumpPosition!.file, position: firstDumpPosition!.position, method: 'locked' });
    const listed = await run(['list', runs[0]!.runId]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/\bbinlog\b/);
    expect(listed.stdout).toMatch(new RegExp(`\\bshop\\b.*\\b${firstDumpPosition!.file.replace('.', '\\.')}:${firstDumpPosition!.position}\\b`));
  });

  test('--at each recorded moment restores exactly that state of shop, into a new name, and leaves the others alone', async () => {
    const blogNow = await state('blog');
    const otherNow = await state('other');
    for (const [i, m] of moments.entries()) {
      const into = `shop_at${i}`;
      const r = await run(['restore', 'db', 'shop', '--at', local(m.at), '--into', into]);
      expect(r.code, r.stderr + r.stdout).toBe(0);
      expect(await state(into), `shop at moment ${i} (${local(m.at)})`).toEqual(m.shop);
    }
    expect(await state('blog')).toEqual(blogNow);
    expect(await state('other')).toEqual(otherNow);
  });

  test('--at a moment after a server restart, from the dump before it: the replay crosses the restart\'s binlog files', async () => {
    const r = await run(['restore', 'db', 'shop', '--at', local(afterRestart!.at), '--into', 'shop_restart', '--dry-run']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`binlog position ${firstDumpPosition!.file}:${firstDumpPosition!.position}`);
    expect(r.stdout).toMatch(/binlog files: bin\.\d{6}, bin\.\d{6}/);
    const b = await run(['restore', 'db', 'shop', '--at', local(afterRestart!.at), '--into', 'shop_restart']);
    expect(b.code, b.stderr + b.stdout).toBe(0);
    expect(await state('shop_restart')).toEqual(afterRestart!.shop);
  });

  test('--dry-run prints the plan: dump, binlog files, events, window', async () => {
    const r = await run(['restore', 'db', 'shop', '--at', local(moments[2]!.at), '--dry-run']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/dump: run \d{8}T\d{6}Z/);
    expect(r.stdout).toMatch(/binlog files: bin\.\d{6}, bin\.\d{6}/);
    expect(r.stdout).toMatch(/events: [1-9]\d* transaction\(s\)/);
    expect(r.stdout).toMatch(/window: /);
  });

  test('binlog events lists the DROP TABLE; --before-event restores the state just before it', async () => {
    const r = await run(['binlog', 'events', 'shop', '--from', local(moments[2]!.at)]);
    expect(r.code, r.stderr).toBe(0);
    const line = r.stdout.split('\n').find((l) => /DROP TABLE/i.test(l));
    expect(line, r.stdout).toBeDefined();
    dropEvent = /(bin\.\d{6}:\d+)/.exec(line!)![1]!;
    const st = await run(['status']);
    expect(st.stdout, st.stdout).toMatch(/point-in-time \(mysql\): from \S+ to \S+; \d+ binlog file\(s\) kept, follower running/);
    expect(r.stdout).not.toMatch(/while down/);
    const b = await run(['restore', 'db', 'shop', '--before-event', dropEvent, '--into', 'shop_before_drop']);
    expect(b.code, b.stderr + b.stdout).toBe(0);
    expect(await state('shop_before_drop')).toEqual(moments[2]!.shop);
  });

  test('a statement run from another default database that changes shop is refused (exit 8)', async () => {
    await my.sql('USE blog; ALTER TABLE shop.items ADD COLUMN sneaky INT');
    const m = await nextSecond();
    await caughtUp();
    await sleep(2500); // a tick of the follower: it says it has copied up to m
    const r = await run(['restore', 'db', 'shop', '--at', local(m), '--into', 'shop_unsafe']);
    expect(r.code).toBe(8);
    expect(r.stderr, r.stderr).toMatch(/default database 'blog'.*--before-event bin\.\d{6}:\d+/);
    const sums = readFileSync(join(binlogDir(), 'SHA256SUMS'), 'utf8');
    expect(sums).toMatch(/^[0-9a-f]{64} {2}bin\.000001$/m);
  });

  test('--at in place with --force replaces shop (a safety dump first)', async () => {
    const r = await run(['restore', 'db', 'shop', '--at', local(moments[1]!.at), '--force']);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(/safety dump/);
    expect(await state('shop')).toEqual(moments[1]!.shop);
    // A moment after it is out of reach from the older dumps (the sneaky ALTER above, and the
    // restore's own DROP DATABASE, run from another default database), and says so.
    await caughtUp();
    await sleep(2500); // a tick of the follower: it says it has copied up to now
    const later = await run(['restore', 'db', 'shop', '--at', local(Date.now() - 1000), '--into', 'shop_after_restore', '--dry-run']);
    expect(later.code).toBe(8);
    expect(later.stderr).toMatch(/refusing: the binlog holds a statement .*a restore of a dump after it/);
  });

  test('a moment before the oldest dump is refused (exit 8) saying from when points can be restored', async () => {
    const r = await run(['restore', 'db', 'shop', '--at', local(beforeDump), '--into', 'shop_early']);
    expect(r.code).toBe(8);
    expect(r.stderr).toMatch(/before the oldest dump of 'shop'.*points from then on/);
  });

  test('a missing binlog copy is refused (exit 8) naming the file and from when', async () => {
    await stopFollower();
    const files = (await my.sql('SHOW BINARY LOGS')).trim().split('\n').map((l) => l.split('\t')[0]!);
    const middle = files[files.length - 2]!;
    renameSync(join(binlogDir(), middle), join(base, middle));
    try {
      const r = await run(['restore', 'db', 'shop', '--at', local(moments[3]!.at), '--into', 'shop_gap']);
      expect(r.code).toBe(8);
      expect(r.stderr).toContain(`binlog file ${middle} is missing`);
      expect(r.stderr).toMatch(/points after \d{4}-\d\d-\d\d \d\d:\d\d:\d\d cannot be reached/);
      const st = await run(['status']);
      expect(st.stdout).toContain(`binlog file ${middle} is missing`);
      expect(st.stdout).toMatch(/binlog follow is not running/);
    } finally {
      renameSync(join(base, middle), join(binlogDir(), middle));
    }
  });


  test('install puts the follower\'s systemd unit in place when the server has binlogs on', async () => {
    const target = join(base, 'install-root');
    const step = await binlogStep(loadConfig({ file: config }), target, { node: process.execPath, cli: '/opt/asb/dist/scripts/apiscp-backup.js', config, dry: false, log: memoryLogger() });
    expect(step.changed).toBe(true);
    const unit = readFileSync(join(target, 'etc/systemd/system', UNIT_NAME), 'utf8');
    expect(unit).toContain(`ExecStart=${process.execPath} /opt/asb/dist/scripts/apiscp-backup.js --config ${config} binlog follow`);
    expect(unit).toMatch(/^Restart=always$/m);
    const again = await binlogStep(loadConfig({ file: config }), target, { node: process.execPath, cli: '/opt/asb/dist/scripts/apiscp-backup.js', config, dry: false, log: memoryLogger() });
    expect(again.changed).toBe(false);
  });

  test('retention keeps the binlog copies back to the oldest kept dump\'s position and no further', () => {
    const dumpsDir = join(root, 'var/backup/apiscp-backup');
    const files = localBinlogs(binlogDir());
    const runs = listRuns(dumpsDir);
    expect(binlogRemovals(files, runs, binlogSeq)).toEqual([]);
    // Were the first run removed, the copies before the second one's position would go with it.
    const second = runs[0]!.manifest!.entries.find((e) => e.database === 'shop')!.binlog!.file;
    expect(binlogRemovals(files, runs.slice(0, 1), binlogSeq)).toEqual(files.filter((f) => f.name < second).map((f) => f.name));
    expect(second).not.toBe(firstDumpPosition!.file);
  });

  test('binlogs the server purged while the follower was down are a gap: recorded, warned, refused', async () => {
    await stopFollower();
    await my.sql("INSERT INTO shop.items (name) VALUES ('lost 1'); FLUSH BINARY LOGS; INSERT INTO shop.items (name) VALUES ('lost 2'); FLUSH BINARY LOGS;");
    const current = (await my.sql('SHOW MASTER STATUS')).trim().split('\t')[0]!;
    // The server keeps a file until its binlog checkpoint has moved past it: purge until it went.
    for (let i = 0; ; i++) {
      await my.sql(`PURGE BINARY LOGS TO '${current}'`);
      if ((await my.sql('SHOW BINARY LOGS')).trim().split('\n').length === 1) break;
      if (i > 50) throw new Error('the server kept its older binlogs');
      await sleep(200);
    }
    startFollower();
    await caughtUp();
    const gaps = JSON.parse(readFileSync(join(binlogDir(), 'gaps.json'), 'utf8')) as { resumedAt: string }[];
    expect(gaps.at(-1)!.resumedAt).toBe(current);
    await sleep(2500);
    const st = await run(['status']);
    expect(st.stdout).toMatch(/binlog gap: the server no longer had the files after bin\.\d{6} \(resumed at bin\.\d{6}\)/);
    const r = await run(['restore', 'db', 'blog', '--at', local(Date.now() - 1000), '--into', 'blog_gap', '--dry-run']);
    expect(r.code).toBe(8);
    expect(r.stderr).toMatch(/binlog file bin\.\d{6} is missing.*points after/);
  });
});
