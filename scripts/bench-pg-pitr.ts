// What a per-database point-in-time restore of PostgreSQL would cost (not built: docs/point-in-time.md):
// `npm run bench:pg-pitr [-- --mb N --wal-mb N --keep]`.
// PostgreSQL's WAL is per cluster, so one database's moment means the whole cluster's base
// backup, its WAL archive replayed into a throwaway server up to the moment, then pg_dump of that
// database from it. A throwaway cluster (lib/throwaway; fsync off as there, full_page_writes on as
// on a real server: the WAL's volume depends on it) with archive_mode on, a `sites` database of
// --mb (pgbench's tables; default 1000) and a small `shop` (the one restored), then:
//   base       pg_basebackup -X stream -c fast (the nightly part)
//   workload   pgbench on both until --wal-mb of WAL (default 1000) is archived, a marker row in
//              shop before the moment and one after it
//   copy       the base backup copied into a scratch data directory (a restore must not use it up)
//   replay     recovery.signal, restore_command from the archive, recovery_target_time, promote:
//              from the start until the server leaves recovery
//   dump       pg_dump -Fc of shop from the throwaway server (what `restore db` would then load)
// Ends with one line:
//   RESULT base_s=<n> copy_s=<n> replay_s=<n> dump_s=<n> total_s=<n> base_s_per_gb=<n> replay_s_per_gb_wal=<n> cluster_mb=<n> wal_mb=<n> archive_mb=<n> disk_mb=<n> exact=<bool>
import { appendFileSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { findPgTool } from '../lib/throwaway/postgres-bin.js';
import { osUser } from '../lib/os-user.js';
import { cmd } from '../lib/proc/command.js';
import { run } from '../lib/proc/run.js';
import { startPostgres, type PostgresServer } from '../lib/throwaway/postgres.js';

const { values: flags } = parseArgs({
  options: {
    mb: { type: 'string', default: '1000' },
    'wal-mb': { type: 'string', default: '1000' },
    keep: { type: 'boolean', default: false },
  },
});
const HOUR = 3_600_000;
const pgUser = osUser('postgres');
if (!pgUser) throw new Error('no OS user postgres: install PostgreSQL (scripts/install-deps.sh)');
const work = mkdtempSync(join(tmpdir(), 'asb-pgpitr-'));
chownSync(work, pgUser.uid, pgUser.gid);
const asPostgres = { uid: pgUser.uid, gid: pgUser.gid, cwd: work, env: { HOME: pgUser.home, LC_ALL: 'C.UTF-8' } };
const seconds = (ms: number): number => Math.round(ms / 100) / 10;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
let src: PostgresServer | undefined;
let scratchStarted: (() => Promise<void>) | undefined;

function tool(name: string, binDir: string): string {
  const found = findPgTool(name, { binDir }) ?? findPgTool(name);
  if (!found) throw new Error(`${name} not found`);
  return found;
}

/** A postgres-owned directory. */
function dirOf(name: string): string {
  const d = join(work, name);
  mkdirSync(d, { recursive: true });
  chownSync(d, pgUser!.uid, pgUser!.gid);
  return d;
}

/** Bytes under a directory (du -sb, without following links). */
async function du(dir: string): Promise<number> {
  return Number((await run(cmd('du', ['-sb', '--', dir]))).stdout.split('\t')[0]);
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

async function timed(f: () => Promise<unknown>): Promise<number> {
  const started = Date.now();
  await f();
  return Date.now() - started;
}

try {
  const archive = dirOf('archive');
  src = await startPostgres({ baseDir: join(work, 'src') });
  const s = src;
  const env = { ...asPostgres.env, PGHOST: s.socketDir, PGPORT: String(s.port), PGUSER: 'postgres' };
  const pgbench = tool('pgbench', s.binDir);
  // pg_basebackup is a replication connection: "all" in pg_hba.conf does not cover it.
  appendFileSync(join(s.dataDir, 'pg_hba.conf'), 'local replication postgres peer\n');
  appendFileSync(join(s.dataDir, 'postgresql.conf'), ['', 'archive_mode = on', `archive_command = 'cp %p ${archive}/%f'`, 'full_page_writes = on', 'max_wal_size = 1GB', ''].join('\n'));
  await s.stop();
  await s.start();
  await s.sql('CREATE DATABASE sites');
  await s.sql('CREATE DATABASE shop');
  // pgbench's scale 1 is about 15 MB of tables and indexes.
  const scale = Math.max(1, Math.round(Number(flags.mb) / 15));
  await run(cmd(pgbench, ['-i', '-q', '-s', String(scale), 'sites'], { ...asPostgres, env }), { timeoutMs: 2 * HOUR });
  await run(cmd(pgbench, ['-i', '-q', '-s', '2', 'shop'], { ...asPostgres, env }), { timeoutMs: HOUR });
  await s.sql('CREATE TABLE pitr_mark (v text)', 'shop');
  const clusterBytes = Number(await s.sql('SELECT sum(pg_database_size(datname)) FROM pg_database'));
  console.log(`cluster: ${(clusterBytes / 1048576).toFixed(0)} MB (sites at pgbench scale ${scale})`);

  const base = join(work, 'base');
  const baseMs = await timed(() => run(cmd(tool('pg_basebackup', s.binDir), ['-D', base, '-X', 'stream', '-c', 'fast'], { ...asPostgres, env }), { timeoutMs: 2 * HOUR }));
  const baseBytes = await du(base);
  const startLsn = await s.sql('SELECT pg_current_wal_lsn()');
  console.log(`base backup: ${(baseBytes / 1048576).toFixed(0)} MB in ${seconds(baseMs)} s`);

  // The workload: pgbench on both databases, rounds until the WAL since the backup reaches --wal-mb.
  const walTarget = Number(flags['wal-mb']) * 1048576;
  const walSince = async (): Promise<number> => Number(await s.sql(`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '${startLsn}')`));
  while ((await walSince()) < walTarget) {
    await Promise.all([
      run(cmd(pgbench, ['-n', '-c', '2', '-j', '1', '-t', '5000', 'sites'], { ...asPostgres, env }), { timeoutMs: HOUR }),
      run(cmd(pgbench, ['-n', '-c', '1', '-t', '1000', 'shop'], { ...asPostgres, env }), { timeoutMs: HOUR }),
    ]);
  }
  // The moment: a marker before it, one after it (each in its own second).
  await s.sql("INSERT INTO pitr_mark VALUES ('before')", 'shop');
  await sleep(1100);
  const moment = await s.sql("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'");
  await sleep(1100);
  await s.sql("INSERT INTO pitr_mark VALUES ('after')", 'shop');
  await run(cmd(pgbench, ['-n', '-c', '1', '-t', '1000', 'sites'], { ...asPostgres, env }), { timeoutMs: HOUR });
  const expected = await s.sql('SELECT sum(abalance), count(*) FROM pgbench_accounts', 'shop');
  const last = await s.sql('SELECT pg_walfile_name(pg_switch_wal())');
  for (let i = 0; !existsSync(join(archive, last)); i++) {
    if (i > 600) throw new Error(`${last} was not archived`);
    await sleep(200);
  }
  const walBytes = await walSince();
  const archiveBytes = await du(archive);
  console.log(`workload: ${(walBytes / 1048576).toFixed(0)} MB of WAL (${(archiveBytes / 1048576).toFixed(0)} MB archived); moment ${moment}`);
  // Only the moment's state is checked below; the source is not needed while the scratch server replays.
  await s.stop();

  // The restore: a scratch copy of the base backup, replayed up to the moment, promoted.
  const scratch = join(work, 'scratch');
  const copyMs = await timed(() => run(cmd('cp', ['-a', '--', base, scratch]), { timeoutMs: 2 * HOUR }));
  const sock = dirOf('rsock');
  const port = await freePort();
  writeFileSync(join(scratch, 'recovery.signal'), '');
  chownSync(join(scratch, 'recovery.signal'), pgUser.uid, pgUser.gid);
  appendFileSync(
    join(scratch, 'postgresql.conf'),
    ['', 'archive_mode = off', `restore_command = 'cp ${archive}/%f %p'`, `recovery_target_time = '${moment}'`, "recovery_target_action = 'promote'", `port = ${port}`, `unix_socket_directories = '${sock}'`, ''].join('\n'),
  );
  const pgCtl = tool('pg_ctl', s.binDir);
  const renv = { ...asPostgres.env, PGHOST: sock, PGPORT: String(port), PGUSER: 'postgres' };
  const psql = async (sql: string, db = 'postgres'): Promise<string> => (await run(cmd(tool('psql', s.binDir), ['-X', '-At', '-q', '-c', sql, db], { ...asPostgres, env: renv }), { timeoutMs: HOUR })).stdout.trim();
  const replayStarted = Date.now();
  await run(cmd(pgCtl, ['-D', scratch, '-l', join(work, 'scratch.log'), '-w', '-t', '7200', 'start'], asPostgres), { timeoutMs: 2 * HOUR });
  scratchStarted = async () => void (await run(cmd(pgCtl, ['-D', scratch, '-m', 'fast', '-w', 'stop'], asPostgres), { timeoutMs: HOUR }));
  while ((await psql('SELECT pg_is_in_recovery()')) !== 'f') await sleep(200);
  const replayMs = Date.now() - replayStarted;
  const marks = await psql('SELECT string_agg(v, \',\' ORDER BY v) FROM pitr_mark', 'shop');
  const got = await psql('SELECT sum(abalance), count(*) FROM pgbench_accounts', 'shop');
  // The moment's state: the marker before it, not the one after (pgbench's later transactions in
  // shop ran before the 'before' marker, so its accounts are those the source ended with).
  const exact = marks === 'before' && got === expected;
  if (!exact) console.log(`WARNING: at the moment shop has markers '${marks}' and accounts ${got} (expected 'before' and ${expected})`);

  const dumpFile = join(dirOf('dump'), 'shop.dump');
  const dumpMs = await timed(() => run(cmd(tool('pg_dump', s.binDir), ['-Fc', '-f', dumpFile, 'shop'], { ...asPostgres, env: renv }), { timeoutMs: 2 * HOUR }));
  const scratchBytes = await du(scratch);
  await scratchStarted();
  scratchStarted = undefined;
  console.log(`restore: copy ${seconds(copyMs)} s, replay ${seconds(replayMs)} s, pg_dump of shop ${seconds(dumpMs)} s (${(statSync(dumpFile).size / 1048576).toFixed(1)} MB); scratch ${(scratchBytes / 1048576).toFixed(0)} MB`);
  const gb = (b: number): number => b / 1073741824;
  const totalMs = copyMs + replayMs + dumpMs;
  // Disk: the kept base backup and archive, plus the scratch cluster during a restore.
  const diskBytes = baseBytes + archiveBytes + scratchBytes;
  console.log(
    `RESULT base_s=${seconds(baseMs)} copy_s=${seconds(copyMs)} replay_s=${seconds(replayMs)} dump_s=${seconds(dumpMs)} total_s=${seconds(totalMs)} base_s_per_gb=${(baseMs / 1000 / gb(baseBytes)).toFixed(1)} replay_s_per_gb_wal=${(replayMs / 1000 / gb(walBytes)).toFixed(1)} cluster_mb=${(clusterBytes / 1048576).toFixed(0)} wal_mb=${(walBytes / 1048576).toFixed(0)} archive_mb=${(archiveBytes / 1048576).toFixed(0)} disk_mb=${(diskBytes / 1048576).toFixed(0)} exact=${exact}`,
  );
} finally {
  await scratchStarted?.().catch(() => undefined);
  await src?.destroy().catch(() => undefined);
  if (!flags.keep) rmSync(work, { recursive: true, force: true });
}
