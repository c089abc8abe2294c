// Point-in-time benchmark: `npm run bench:pitr [-- --mb N --events N[,N…] --durable --keep]`.
// A throwaway MariaDB with binlogs on (ROW; bench:dumps' server settings, so commits do not wait
// for an fsync each unless --durable), the dump bench's big database (--mb of table data, default
// 1100), one dump, the follower (`binlog follow`) running while a write workload of single-row
// transactions goes into that database up to each count of --events (cumulative, default
// 100000,1000000: the same data and dump serve every step), then at each step, through the built
// CLI and by hand:
//   plan                 restore db --at --dry-run: the scan of the window (part of --at)
//   restore db --at      the dump plus the replay, into a new name
//   restore db           the same dump alone (the floor of --at)
//   by hand              mariadb-binlog --database … | mariadb on a loaded copy (the replay's floor)
// Each step ends with one line:
//   RESULT at_s=<n> plain_s=<n> hand_replay_s=<n> plan_s=<n> at_vs_plain=<x> at_vs_plain_plus_hand=<x> follower_cpu_pct=<n> follower_rss_mb=<n> at_rss_mb=<n> events=<n> data_mb=<n> same_checksums=<bool>
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Manifest } from '../lib/model/manifest.js';
import { startChild, type StartedChild } from '../lib/proc/child.js';
import { cmd } from '../lib/proc/command.js';
import { pipeToFile } from '../lib/proc/pipeline.js';
import { run } from '../lib/proc/run.js';
import { startMariadb, type MariadbServer } from '../lib/throwaway/mariadb.js';
import { bigDatabase, generate } from './bench/generate.js';
import { bin, writeConfig } from './bench/measure.js';

const CLI = join(dirname(fileURLToPath(import.meta.url)), 'apiscp-backup.js');
const { values: flags } = parseArgs({
  options: {
    mb: { type: 'string', default: '1100' },
    events: { type: 'string', default: '100000,1000000' },
    durable: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
});
const steps = flags.events.split(',').map(Number);
if (steps.some((n, i) => !Number.isInteger(n) || n <= (steps[i - 1] ?? 0))) throw new Error(`--events: increasing counts, comma-separated (got ${flags.events})`);
const work = mkdtempSync(join(tmpdir(), 'asb-bench-pitr-'));
let server: MariadbServer | undefined;
let follower: StartedChild | undefined;
const seconds = (ms: number): number => Math.round(ms / 100) / 10;

async function cli(configFile: string, args: string[]): Promise<number> {
  return (await cliPeak(configFile, args)).ms;
}

/** Runs the CLI, sampling the peak RSS of it and its children (the decoder, the client). */
async function cliPeak(configFile: string, args: string[]): Promise<{ ms: number; peakRssKb: number }> {
  const started = Date.now();
  const child = startChild(cmd(process.execPath, [CLI, '-c', configFile, ...args]));
  let peakRssKb = 0;
  const sampler = setInterval(() => (peakRssKb = Math.max(peakRssKb, usage(child.pid!).rssKb)), 500);
  const end = await child.ended;
  clearInterval(sampler);
  if (end.exitCode !== 0) throw new Error(child.failure(end, `apiscp-backup ${args.join(' ')}`).message);
  return { ms: Date.now() - started, peakRssKb };
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
  const durability = flags.durable ? [] : ['--innodb-flush-log-at-trx-commit=2', '--innodb-doublewrite=0'];
  // The bench's restores are not binlogged: a step's three loads of the database would otherwise
  // be gigabytes of binlog the next step's scan and replays read through.
  const restored = ['bench_at', 'bench_plain', 'bench_hand'].map((n) => `--binlog-ignore-db=${n}`);
  server = await startMariadb({ baseDir: work, serverArgs: ['--innodb-buffer-pool-size=1G', '--innodb-log-file-size=512M', ...durability, '--log-bin=bin', '--binlog-format=ROW', '--server-id=1', ...restored] });
  const srv = server;
  const db = bigDatabase(Number(flags.mb));
  await generate(srv, [db]);
  await srv.sql('CREATE TABLE pitr_w (id INT PRIMARY KEY, v INT, note VARCHAR(40)) ENGINE=InnoDB', db.name);
  const dataMb = db.dataBytes / 1024 / 1024;
  const root = join(work, 'root');
  const configFile = join(work, 'config.json');
  writeConfig(configFile, root, srv.socket, [db.name]);
  await cli(configFile, ['dump']);
  const manifest = JSON.parse(readFileSync(join(root, 'var/backup/apiscp-backup/latest/manifest.json'), 'utf8')) as Manifest;
  const entry = manifest.entries.find((e) => e.database === db.name)!;
  console.log(`generated and dumped ${dataMb.toFixed(0)} MB (${((entry.bytes ?? 0) / 1024 / 1024).toFixed(0)} MB compressed dump), position ${entry.binlog?.file}:${entry.binlog?.position}`);

  const followed = startChild(cmd(process.execPath, [CLI, '-c', configFile, 'binlog', 'follow', '--tick', '2']));
  follower = followed;
  await new Promise((r) => setTimeout(r, 2000));
  const dir = join(root, 'var/backup/apiscp-backup/binlog');
  let written = 0;
  for (const [step, events] of steps.entries()) {
    const before = usage(followed.pid!);
    // Sampled before the workload too: a short one ends before the first interval.
    let peakRss = before.rssKb;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, usage(followed.pid!).rssKb)), 500);
    const workloadStarted = Date.now();
    await workload(srv, db.name, written + 1, events);
    written = events;
    const workloadMs = Date.now() - workloadStarted;
    // Caught up: the copy of the server's current file as long as the server's position.
    for (;;) {
      const [file, pos] = (await srv.sql('SHOW MASTER STATUS')).trim().split('\t');
      try {
        if (readFileSync(join(dir, file!)).length >= Number(pos)) break;
      } catch {
        // not there yet
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    const caughtUpMs = Date.now() - workloadStarted;
    clearInterval(sampler);
    const after = usage(followed.pid!);
    const followerCpuPct = (100 * (after.cpuS - before.cpuS)) / (caughtUpMs / 1000);
    await new Promise((r) => setTimeout(r, 2500));
    const moment = Date.now() - 1000;
    console.log(`workload: ${events} transactions (${Math.round((events - (steps[step - 1] ?? 0)) / (workloadMs / 1000))}/s); follower caught up ${seconds(caughtUpMs - workloadMs)} s after; follower CPU ${followerCpuPct.toFixed(1)}%, peak RSS ${(peakRss / 1024).toFixed(0)} MB`);

    const planMs = await cli(configFile, ['restore', 'db', db.name, '--at', local(moment), '--dry-run']);
    const at = await cliPeak(configFile, ['restore', 'db', db.name, '--at', local(moment), '--into', 'bench_at']);
    const plainMs = await cli(configFile, ['restore', 'db', db.name, '--from', manifest.runId, '--into', 'bench_plain']);
    await cli(configFile, ['restore', 'db', db.name, '--from', manifest.runId, '--into', 'bench_hand']);
    const files = readdirSync(dir).filter((f) => /^bin\.\d{6}$/.test(f)).sort().filter((f) => f >= entry.binlog!.file);
    const handStarted = Date.now();
    await pipeToFile(
      [
        cmd(bin('mariadb-binlog', 'mysqlbinlog'), [`--database=${db.name}`, `--rewrite-db=${db.name}->bench_hand`, `--start-position=${entry.binlog!.position}`, ...files.map((f) => join(dir, f))]),
        cmd(bin('mariadb', 'mysql'), ['--no-defaults', `--socket=${srv.socket}`, '--user=root', '--binary-mode', '--database=bench_hand']),
      ],
      join(work, `hand-${step}.out`),
      { timeoutMs: 6 * 3_600_000 },
    );
    const handMs = Date.now() - handStarted;
    const check = async (name: string): Promise<string> => (await srv.sql(`CHECKSUM TABLE ${name}.pitr_w`)).trim().split('\t').pop()!;
    const [orig, atSum, hand] = [await check(db.name), await check('bench_at'), await check('bench_hand')];
    if (orig !== atSum || orig !== hand) console.log(`WARNING: checksums differ: original ${orig}, --at ${atSum}, by hand ${hand}`);
    // The next step restores into the same names; and three copies of the database would crowd the buffer pool.
    await srv.sql('DROP DATABASE bench_at; DROP DATABASE bench_plain; DROP DATABASE bench_hand');
    console.log(`restore db --at ${seconds(at.ms)} s (of which the plan's scan ${seconds(planMs)} s, peak RSS ${(at.peakRssKb / 1024).toFixed(0)} MB); plain restore db ${seconds(plainMs)} s; replay by hand ${seconds(handMs)} s`);
    console.log(
      `RESULT at_s=${seconds(at.ms)} plain_s=${seconds(plainMs)} hand_replay_s=${seconds(handMs)} plan_s=${seconds(planMs)} at_vs_plain=${(at.ms / plainMs).toFixed(2)} at_vs_plain_plus_hand=${(at.ms / (plainMs + handMs)).toFixed(2)} follower_cpu_pct=${followerCpuPct.toFixed(1)} follower_rss_mb=${(peakRss / 1024).toFixed(0)} at_rss_mb=${(at.peakRssKb / 1024).toFixed(0)} events=${events} data_mb=${dataMb.toFixed(0)} same_checksums=${orig === atSum && orig === hand}`,
    );
  }
} finally {
  // Also when a step failed: a follower left running retries the destroyed server forever.
  void follower?.terminate();
  await follower?.ended;
  await server?.destroy().catch(() => undefined);
  if (!flags.keep) rmSync(work, { recursive: true, force: true });
}

/**
 * Transactions `from`..`to` (single-row, autocommit; every third an update of the row inserted
 * just before it: events the replay must apply one by one), fed in chunks of 20,000 statements,
 * two client sessions at a time, so a million take minutes rather than an hour of round trips.
 */
async function workload(srv: MariadbServer, database: string, from: number, to: number): Promise<void> {
  const CHUNK = 20_000;
  const chunks: [number, number][] = [];
  for (let a = from; a <= to; a += CHUNK) chunks.push([a, Math.min(to, a + CHUNK - 1)]);
  const next = async (): Promise<void> => {
    for (let c = chunks.shift(); c; c = chunks.shift()) {
      const [a, b] = c;
      const lines: string[] = [];
      // The update's row is in the same chunk, inserted by the same session before it: it exists.
      for (let i = a; i <= b; i++) lines.push((i - a) % 3 === 2 ? `UPDATE pitr_w SET v = v + 1 WHERE id = ${i - 1};` : `INSERT INTO pitr_w VALUES (${i}, ${i}, 'event ${i}');`);
      await srv.sql(lines.join('\n'), database);
    }
  };
  await Promise.all([next(), next()]);
}
