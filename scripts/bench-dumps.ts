// Dump benchmark: `npm run bench:dumps [-- --dbs N --mb N --big-mb N --repeat N --quick --keep]`.
// Starts a throwaway MariaDB, generates a hosting-like set of databases inside it, then measures
// in the same run (medians of --repeat, order alternating, after an untimed warm-up):
//   ours      the built CLI `dump` (zstd, concurrency 2, verify, fsync, atomic rename)
//   baseline  ApisCP-style: `mariadb-dump DB | gzip > file`, one database after the other
//   limit     `mariadb-dump DB > /dev/null`, 2 at a time, largest first
// and the peak RSS of our Node process dumping one ≥1 GB database alone. Ends with one line:
//   RESULT vs_baseline=<ours/baseline> vs_limit=<ours/limit> peak_rss_mb=<n> dbs=<n> mb=<n>
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { terminateAll, waitForChildren } from '../lib/run/process-group.js';
import { startMariadb, type MariadbServer } from '../lib/sandbox/mariadb.js';
import { bigDatabase, generate, planDatabases, type BenchDb } from './bench/generate.js';
import { median, runBaseline, runLimit, runOurs, sqlBytes, writeConfig, type Sample } from './bench/measure.js';

const here = dirname(fileURLToPath(import.meta.url));
const CLI = join(here, 'apiscp-backup.js');
const PROBE = join(here, 'bench', 'rss-probe.js');
const CONCURRENCY = 2; // dumps.concurrency's default: what ours runs with, and the limit too

const { values: flags } = parseArgs({
  options: {
    dbs: { type: 'string' },
    mb: { type: 'string' },
    'big-mb': { type: 'string' },
    repeat: { type: 'string' },
    quick: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    'buffer-pool': { type: 'string', default: '1G' },
    engine: { type: 'string' },
    compression: { type: 'string' },
    level: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  console.log('usage: node dist/scripts/bench-dumps.js [--dbs 40] [--mb 600] [--big-mb 1100] [--repeat 3] [--quick] [--keep] [--buffer-pool 1G] [--engine bacula] [--compression zstd|gzip|none] [--level N]');
  process.exit(0);
}
const settings = { engine: flags.engine, compression: flags.compression, level: flags.level ? Number(flags.level) : undefined };
const num = (v: string | undefined, quick: number, full: number): number => {
  const n = v === undefined ? (flags.quick ? quick : full) : Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`bad number '${v}'`);
  return n;
};
const opts = {
  dbs: Math.round(num(flags.dbs, 8, 40)),
  mb: num(flags.mb, 60, 600),
  bigMb: num(flags['big-mb'], 120, 1100),
  repeat: Math.round(num(flags.repeat, 1, 3)),
};

const MB = 1024 * 1024;
const work = mkdtempSync(join(tmpdir(), 'asb-bench-'));
let server: MariadbServer | undefined;
let cleaning: Promise<void> | undefined;
let interrupted = false;

async function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    terminateAll(1000);
    await waitForChildren(5000);
    if (flags.keep) {
      console.log(`--keep: server socket ${server?.socket ?? '-'} (pid ${server?.pid ?? '-'}), files in ${work}`);
      return;
    }
    await server?.destroy().catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  })();
  return cleaning;
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    interrupted = true;
    console.error(`\n${sig}: cleaning up`);
    void cleanup().finally(() => process.exit(130));
  });
}

const secs = (t0: number): number => (performance.now() - t0) / 1000;
const fmt = (n: number, d = 1): string => n.toFixed(d);

async function main(): Promise<void> {
  console.log(`bench:dumps  dbs=${opts.dbs} mb=${opts.mb} big-mb=${opts.bigMb} repeat=${opts.repeat} concurrency=${CONCURRENCY}  work=${work}`);
  const serverTmp = join(work, 'tmp'); // not /tmp: other jobs' /tmp cleanups removed its temp tables
  mkdirSync(serverTmp);
  server = await startMariadb({
    baseDir: work,
    // A buffer pool that holds the timed databases; a large redo log and relaxed flushing only
    // speed up the generation (dumps only read).
    serverArgs: [`--innodb-buffer-pool-size=${flags['buffer-pool']}`, '--innodb-log-file-size=512M', '--innodb-flush-log-at-trx-commit=2', '--innodb-doublewrite=0', `--tmpdir=${serverTmp}`],
  });
  console.log(`MariaDB ${server.version}, pid ${server.pid}`);

  // Generation (not part of any ratio). The big database first, so the small ones are the
  // most recently touched when the timed runs start.
  const big = bigDatabase(opts.bigMb);
  const dbs = planDatabases(opts.dbs, opts.mb);
  let t0 = performance.now();
  await generate(server, [big]);
  await generate(server, dbs);
  const genS = secs(t0);
  const dataMb = dbs.reduce((n, d) => n + d.dataBytes, 0) / MB;
  const sizes = [...dbs].sort((a, b) => b.dataBytes - a.dataBytes).map((d) => d.dataBytes / MB);
  console.log(
    `generated in ${fmt(genS)} s: ${dbs.length} databases, ${fmt(dataMb)} MB of table data ` +
      `(largest ${sizes.slice(0, 3).map((s) => fmt(s)).join(', ')} MB; smallest ${fmt(sizes[sizes.length - 1] ?? 0, 2)} MB; ` +
      `${dbs.filter((d) => d.myisam).length} with MyISAM), big database ${fmt(big.dataBytes / MB)} MB`,
  );

  const configFile = join(work, 'config.yaml');
  const root = join(work, 'root');
  mkdirSync(root, { recursive: true });
  writeConfig(configFile, root, server.socket, dbs.map((d) => d.name), settings);
  const dumpsDir = join(root, 'var/backup/apiscp-backup');

  // Warm-up (untimed): every database through mariadb-dump once, counting the SQL bytes, then
  // one run of ours so its code paths and files are warm too.
  t0 = performance.now();
  const sql = await sqlBytes(server.socket, dbs);
  await runOurs(CLI, PROBE, configFile, dumpsDir);
  console.log(`warm-up in ${fmt(secs(t0))} s: ${fmt(sql / MB)} MB of SQL`);

  const samples: Record<'ours' | 'baseline' | 'limit', Sample[]> = { ours: [], baseline: [], limit: [] };
  const pid = server.pid;
  const measure = {
    ours: () => runOurs(CLI, PROBE, configFile, dumpsDir, pid),
    baseline: () => runBaseline(server!.socket, dbs, join(work, 'baseline'), pid),
    limit: () => runLimit(server!.socket, dbs, CONCURRENCY, pid),
  };
  for (let r = 0; r < opts.repeat; r++) {
    const order = (r % 2 === 0 ? ['ours', 'baseline', 'limit'] : ['limit', 'baseline', 'ours']) as (keyof typeof measure)[];
    for (const name of order) {
      const s = await measure[name]();
      samples[name].push(s);
      console.log(`  run ${r + 1}/${opts.repeat} ${name.padEnd(8)} ${fmt(s.seconds, 2)} s`);
    }
  }

  // Peak RSS of our process on one big database alone.
  const bigConfig = join(work, 'config-big.yaml');
  writeConfig(bigConfig, root, server.socket, [big.name], settings);
  t0 = performance.now();
  const bigRun = await runOurs(CLI, PROBE, bigConfig, dumpsDir, pid);
  const peakRssMb = Math.round((bigRun.probe?.peakRssKb ?? 0) / 1024);
  const peakSmallMb = Math.max(...samples.ours.map((s) => (s.probe?.peakRssKb ?? 0) / 1024));

  report(samples, sql, dataMb, bigRun, big);
  console.log(`peak RSS of our process: ${peakRssMb} MB dumping ${big.name} (${fmt(big.dataBytes / MB)} MB of table data) alone; ${fmt(peakSmallMb, 0)} MB on the ${dbs.length}-database run`);

  const ours = median(samples.ours.map((s) => s.seconds));
  const vsBaseline = ours / median(samples.baseline.map((s) => s.seconds));
  const vsLimit = ours / median(samples.limit.map((s) => s.seconds));
  const verdict = (ok: boolean): string => (ok ? 'ok' : 'MISSED');
  console.log(
    `targets: vs_baseline ≤ 0.5 ${verdict(vsBaseline <= 0.5)}, vs_limit ≤ 1.25 ${verdict(vsLimit <= 1.25)}, peak_rss_mb ≤ 150 ${verdict(peakRssMb <= 150)}`,
  );
  await cleanup();
  console.log(`settings: engine=${settings.engine ?? 'none (default)'} compression=${settings.compression ?? 'auto'} level=${settings.level ?? 'default'}`);
  console.log(`RESULT vs_baseline=${vsBaseline.toFixed(2)} vs_limit=${vsLimit.toFixed(2)} peak_rss_mb=${peakRssMb} dbs=${dbs.length} mb=${Math.round(dataMb)}`);
}

function report(samples: Record<string, Sample[]>, sqlBytesTotal: number, dataMb: number, bigRun: Sample, big: BenchDb): void {
  const oursS = median(samples.ours!.map((s) => s.seconds));
  const rows: [string, string, Sample[]][] = [
    ['ours', `CLI dump: zstd, ${CONCURRENCY} at a time`, samples.ours!],
    ['baseline', 'mariadb-dump | gzip, sequential', samples.baseline!],
    ['limit', `mariadb-dump > /dev/null, ${CONCURRENCY} at a time`, samples.limit!],
  ];
  console.log(`\n${''.padEnd(9)}${'what'.padEnd(40)}${'median s'.padStart(9)}${'min s'.padStart(8)}${'MB/s'.padStart(7)}${'ours/x'.padStart(8)}${'client cpu s'.padStart(13)}${'server cpu s'.padStart(13)}${'cores busy'.padStart(11)}`);
  for (const [name, what, ss] of rows) {
    const m = median(ss.map((s) => s.seconds));
    const cpu = (f: (s: Sample) => number): string => fmt(median(ss.map(f))).padStart(13);
    console.log(
      `${name.padEnd(9)}${what.padEnd(40)}${fmt(m, 2).padStart(9)}${fmt(Math.min(...ss.map((s) => s.seconds)), 2).padStart(8)}` +
        `${fmt(sqlBytesTotal / MB / m).padStart(7)}${fmt(oursS / m, 2).padStart(8)}${cpu((s) => s.clientCpuS)}${cpu((s) => s.serverCpuS)}` +
        fmt(median(ss.map((s) => (s.clientCpuS + s.serverCpuS) / s.seconds)), 2).padStart(11),
    );
  }
  // Where ours' CPU goes: its dump processes cost about what the limit's do, so the rest of its
  // children's time is compression, verification (decompress again) and pipe copies.
  const probe = samples.ours!.map((s) => s.probe!);
  const nodeS = median(probe.map((p) => p.selfCpuS));
  const childS = median(probe.map((p) => p.childCpuS));
  const dumpS = median(samples.limit!.map((s) => s.clientCpuS));
  console.log(`MB/s = uncompressed SQL (${fmt(sqlBytesTotal / MB)} MB from ${fmt(dataMb)} MB of table data) per second; cores busy = (client + server CPU) / wall.`);
  console.log(
    `ours' CPU (median): node ${fmt(nodeS)} s, children ${fmt(childS)} s ≈ mariadb-dump ${fmt(dumpS)} s (as in limit) + ` +
      `compression, verification and pipes ${fmt(childS - dumpS)} s; server ${fmt(median(samples.ours!.map((s) => s.serverCpuS)))} s`,
  );
  console.log(
    `big database alone: ${fmt(bigRun.seconds, 2)} s for ${fmt(big.dataBytes / MB)} MB of table data; ` +
      `node ${fmt(bigRun.probe?.selfCpuS ?? 0)} s CPU, children ${fmt(bigRun.probe?.childCpuS ?? 0)} s, server ${fmt(bigRun.serverCpuS)} s`,
  );
}

main().catch(async (err: unknown) => {
  if (interrupted) return; // the signal handler cleans up and exits; the killed child is no news
  console.error(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
  await cleanup();
  process.exit(1);
});
