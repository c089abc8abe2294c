// Point-in-time benchmark: `npm run bench:pitr [-- --mb N --events N --keep]`.
// A throwaway MariaDB with binlogs on (ROW), the dump bench's big database (--mb of table data,
// default 1100), one dump, the follower (`binlog follow`) running while a write workload of
// --events single-row transactions (default 100000) goes into that database, then through the
// built CLI and by hand:
//   restore db --at      the dump plus the replay, into a new name
//   restore db           the same dump alone (the floor of --at)
//   by hand              mariadb-binlog --database … | mariadb on a loaded copy (the replay's floor)
// Ends with one line:
//   RESULT at_s=<n> plain_s=<n> hand_replay_s=<n> at_vs_plain=<x> at_vs_plain_plus_hand=<x> follower_cpu_pct=<n> follower_rss_mb=<n> events=<n> data_mb=<n>
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Manifest } from '../lib/model/manifest.js';
import { startChild } from '../lib/run/child.js';
import { cmd } from '../lib/run/command.js';
import { pipeToFile } from '../lib/run/pipeline.js';
import { run } from '../lib/run/run.js';
import { startMariadb, type MariadbServer } from '../lib/sandbox/mariadb.js';
import { bigDatabase, generate } from './bench/generate.js';
import { bin, writeConfig } from './bench/measure.js';

const CLI = join(dirname(fileURLToPath(import.meta.url)), 'apiscp-backup.js');
const { values: flags } = parseArgs({
  options: {
    mb: { type: 'string', default: '1100' },
    events: { type: 'string', default: '100000' },
    keep: { type: 'boolean', default: false },
  },
});
const events = Number(flags.events);
const work = mkdtempSync(join(tmpdir(), 'asb-bench-pitr-'));
let server: MariadbServer | undefined;
const seconds = (ms: number): number => Math.round(ms / 100) / 10;

async function cli(configFile: string, args: string[]): Promise<number> {
  const started = Date.now();
  await run(cmd(process.execPath, [CLI, '-c', configFile, ...args]), { timeoutMs: 6 * 3_600_000 });
  return Date.now() - started;
}

/** CPU seconds (user + system) and RSS (kB) of a process and its children, from /proc. */
function usage(pid: number): { cpuS: number; rssKb: number } {
  let cpuS = 0;
  let rssKb = 0;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const fields = readFileSync(`/proc/${name}/stat`, 'utf8').split(') ')[1]!.split(' ');
      if (Number(name) !== pid && Number(fields[1]) !== pid) continue;
      cpuS += (Number(fields[11]) + Number(fields[12])) / 100;
      rssKb += Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${name}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      // gone meanwhile
    }
  }
  return { cpuS, rssKb };
}

const local = (ms: number): string => {
  const d = new Date(ms);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
};

try {
  server = await startMariadb({ baseDir: work, serverArgs: ['--innodb-buffer-pool-size=1G', '--log-bin=bin', '--binlog-format=ROW', '--server-id=1'] });
  const db = bigDatabase(Number(flags.mb));
  await generate(server, [db]);
  await server.sql('CREATE TABLE pitr_w (id INT PRIMARY KEY, v INT, note VARCHAR(40)) ENGINE=InnoDB', db.name);
  const dataMb = db.dataBytes / 1024 / 1024;
  const root = join(work, 'root');
  const configFile = join(work, 'config.json');
  writeConfig(configFile, root, server.socket, [db.name]);
  await cli(configFile, ['dump']);
  const manifest = JSON.parse(readFileSync(join(root, 'var/backup/apiscp-backup/latest/manifest.json'), 'utf8')) as Manifest;
  const entry = manifest.entries.find((e) => e.database === db.name)!;
  console.log(`generated and dumped ${dataMb.toFixed(0)} MB (${((entry.bytes ?? 0) / 1024 / 1024).toFixed(0)} MB compressed dump), position ${entry.binlog?.file}:${entry.binlog?.position}`);

  const follower = startChild(cmd(process.execPath, [CLI, '-c', configFile, 'binlog', 'follow', '--tick', '2']));
  await new Promise((r) => setTimeout(r, 2000));
  const before = usage(follower.pid!);
  let peakRss = 0;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, usage(follower.pid!).rssKb)), 500);
  const workloadStarted = Date.now();
  // Single-row transactions (autocommit), a third of them updates: events the replay must apply one by one.
  const lines: string[] = [];
  for (let i = 1; i <= events; i++) lines.push(i % 3 === 0 ? `UPDATE pitr_w SET v = v + 1 WHERE id = ${i - 1};` : `INSERT INTO pitr_w VALUES (${i}, ${i}, 'event ${i}');`);
  await server.sql(lines.join('\n'), db.name);
  const workloadMs = Date.now() - workloadStarted;
  // Caught up: the copy of the server's current file as long as the server's position.
  for (;;) {
    const [file, pos] = (await server.sql('SHOW MASTER STATUS')).trim().split('\t');
    try {
      if (readFileSync(join(root, 'var/backup/apiscp-backup/binlog', file!)).length >= Number(pos)) break;
    } catch {
      // not there yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const caughtUpMs = Date.now() - workloadStarted;
  clearInterval(sampler);
  const after = usage(follower.pid!);
  const followerCpuPct = (100 * (after.cpuS - before.cpuS)) / (caughtUpMs / 1000);
  await new Promise((r) => setTimeout(r, 2500));
  const moment = Date.now() - 1000;
  console.log(`workload: ${events} transactions in ${seconds(workloadMs)} s; follower caught up ${seconds(caughtUpMs - workloadMs)} s after; follower CPU ${followerCpuPct.toFixed(1)}%, peak RSS ${(peakRss / 1024).toFixed(0)} MB`);

  const atMs = await cli(configFile, ['restore', 'db', db.name, '--at', local(moment), '--into', 'bench_at']);
  const plainMs = await cli(configFile, ['restore', 'db', db.name, '--from', manifest.runId, '--into', 'bench_plain']);
  await cli(configFile, ['restore', 'db', db.name, '--from', manifest.runId, '--into', 'bench_hand']);
  void follower.terminate();
  await follower.ended;
  const dir = join(root, 'var/backup/apiscp-backup/binlog');
  const files = readdirSync(dir).filter((f) => /^bin\.\d{6}$/.test(f)).sort().filter((f) => f >= entry.binlog!.file);
  const handStarted = Date.now();
  await pipeToFile(
    [
      cmd(bin('mariadb-binlog', 'mysqlbinlog'), [`--database=${db.name}`, `--rewrite-db=${db.name}->bench_hand`, `--start-position=${entry.binlog!.position}`, ...files.map((f) => join(dir, f))]),
      cmd(bin('mariadb', 'mysql'), ['--no-defaults', `--socket=${server.socket}`, '--user=root', '--binary-mode', '--database=bench_hand']),
    ],
    join(work, 'hand.out'),
    { timeoutMs: 6 * 3_600_000 },
  );
  const handMs = Date.now() - handStarted;
  const check = async (name: string): Promise<string> => (await server!.sql(`CHECKSUM TABLE ${name}.pitr_w`)).trim().split('\t').pop()!;
  const [orig, at, hand] = [await check(db.name), await check('bench_at'), await check('bench_hand')];
  if (orig !== at || orig !== hand) console.log(`WARNING: checksums differ: original ${orig}, --at ${at}, by hand ${hand}`);
  console.log(`restore db --at ${seconds(atMs)} s; plain restore db ${seconds(plainMs)} s; replay by hand ${seconds(handMs)} s`);
  console.log(
    `RESULT at_s=${seconds(atMs)} plain_s=${seconds(plainMs)} hand_replay_s=${seconds(handMs)} at_vs_plain=${(atMs / plainMs).toFixed(2)} at_vs_plain_plus_hand=${(atMs / (plainMs + handMs)).toFixed(2)} follower_cpu_pct=${followerCpuPct.toFixed(1)} follower_rss_mb=${(peakRss / 1024).toFixed(0)} events=${events} data_mb=${dataMb.toFixed(0)} same_checksums=${orig === at && orig === hand}`,
  );
} finally {
  await server?.destroy().catch(() => undefined);
  if (!flags.keep) rmSync(work, { recursive: true, force: true });
}
