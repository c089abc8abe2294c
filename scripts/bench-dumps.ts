// Dump benchmark: `npm run bench:dumps [-- --only many,big,tiny,acl,restore,latency --quick …]`.
// Starts a throwaway MariaDB, generates hosting-like data in it and compares, in the same run
// (medians of --repeat, order alternating, after an untimed warm-up), what a user could pick:
//   many     40 databases: ours vs mydumper -t 2 -c, the shell floor (mariadb-dump | zstd -1,
//            2 at a time), the sequential ApisCP-style baseline (| gzip) and mariadb-dump > /dev/null
//   big      one ≥1 GB database: ours vs mydumper -t 2 -c -r 200000; our peak RSS
//   tiny     1,000 tiny databases: ours vs an xargs -P2 loop of mariadb-dump | zstd
//   acl      ACL/xattr sidecar over ≥200,000 inodes vs raw getfacl/getfattr | zstd; restore vs setfacl/setfattr --restore
//   restore  the big database: our `restore db` (CLI, 2 connections) vs myloader -t 2; zstd -dc | mariadb once
//   latency  p99 of a steady sysbench load on another database: idle vs while ours, mydumper, baseline dump
// and ends with one line:
//   RESULT vs_mydumper=… big_vs_mydumper=… vs_floor=… vs_baseline=… tiny_vs_loop=… sidecar_vs_raw=…
//          restore_vs_myloader=… p99_ratio=… peak_rss_mb=… dbs=… mb=…
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Manifest } from '../lib/model/manifest.js';
import { cmd } from '../lib/proc/command.js';
import { run } from '../lib/proc/run.js';
import { terminateAll, waitForChildren } from '../lib/proc/process-group.js';
import { startMariadb, type MariadbServer } from '../lib/throwaway/mariadb.js';
import { makeAclTree, runOurAclRestore, runOurSidecar, runRawAclRestore, runRawSidecar } from './bench/acl.js';
import { bigDatabase, generate, generateTiny, planDatabases } from './bench/generate.js';
import { idleCpuHog, p99While, prepareSysbench, sysbenchP99, type Latency } from './bench/latency.js';
import { bin, median, runBaseline, runFloor, runLimit, runMydumper, runMyloader, runOurRestore, runOurs, runPipeRestore, runTinyLoop, sqlBytes, writeConfig, type Sample } from './bench/measure.js';

const here = dirname(fileURLToPath(import.meta.url));
const CLI = join(here, 'apiscp-backup.js');
const PROBE = join(here, 'bench', 'rss-probe.js');
const CONCURRENCY = 2; // dumps.concurrency's default: what ours runs with, and the floor too
// dumps.max_rate in the latency section's paced row: the rate that brought the sites' p99 near
// twice idle when tried by hand (pv -L).
const PACED_RATE = '10M';
const SECTIONS = ['many', 'big', 'tiny', 'acl', 'restore', 'latency'] as const;
type Section = (typeof SECTIONS)[number];

const { values: flags } = parseArgs({
  options: {
    only: { type: 'string' },
    dbs: { type: 'string' },
    mb: { type: 'string' },
    'big-mb': { type: 'string' },
    tiny: { type: 'string' },
    inodes: { type: 'string' },
    repeat: { type: 'string' },
    quick: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    'buffer-pool': { type: 'string' },
    engine: { type: 'string' },
    compression: { type: 'string' },
    level: { type: 'string' },
    against: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  console.log(`usage: node dist/scripts/bench-dumps.js [--only ${SECTIONS.join(',')}] [--quick] [--repeat 3] [--dbs 40] [--mb 600] [--big-mb 1100] [--tiny 1000] [--inodes 200000] [--keep] [--buffer-pool 1G] [--engine bacula] [--compression zstd|gzip|none] [--level N] [--against OTHER/dist/scripts]`);
  console.log('  --against: the tiny section also times another build\'s CLI (e.g. main\'s) in the same run, interleaved: a before/after above the machine\'s noise');
  process.exit(0);
}
const only = new Set((flags.only ?? SECTIONS.join(',')).split(',').map((s) => s.trim()));
for (const s of only) if (!SECTIONS.includes(s as Section)) throw new Error(`--only: unknown section '${s}' (${SECTIONS.join(', ')})`);
const want = (s: Section): boolean => only.has(s);
// The speed sections run ours at nice 0 like every tool it is compared with (on an idle server
// nice changes nothing; on this shared machine a niced ours would measure the neighbours); the
// latency section runs it with the defaults (nice 10), as a server runs it.
const defaults = { engine: flags.engine, compression: flags.compression, level: flags.level ? Number(flags.level) : undefined };
const settings = { ...defaults, priority: { nice: 0, ionice: 'none' } };
const num = (v: string | undefined, quick: number, full: number): number => {
  const n = v === undefined ? (flags.quick ? quick : full) : Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`bad number '${v}'`);
  return n;
};
const opts = {
  dbs: Math.round(num(flags.dbs, 5, 40)),
  mb: num(flags.mb, 16, 600),
  bigMb: num(flags['big-mb'], 24, 1100),
  tiny: Math.round(num(flags.tiny, 12, 1000)),
  inodes: Math.round(num(flags.inodes, 2000, 200_000)),
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
const med = (ss: readonly Sample[]): number => median(ss.map((s) => s.seconds));

/**
 * Every variant starts with no dirty file pages. With 24 GB of RAM the kernel writes nothing back
 * for 30 s, so the files the previous variant left unsynced (mydumper's, the floor's: ~200 MB
 * each) were written by ours' end-of-run syncfs and counted in ours (ours was slower whenever it
 * did not run first). Untimed; the variants that never sync keep that advantage within their own
 * run.
 */
async function writeBackDirtyFiles(): Promise<void> {
  await run(cmd(bin('sync'), []), { timeoutMs: 600_000 });
}

/** Each variant `repeat` times, the order reversed every other round; medians compared. */
async function compare(title: string, variants: Record<string, { what: string; run: () => Promise<Sample> }>, repeat = opts.repeat): Promise<Record<string, Sample[]>> {
  const names = Object.keys(variants);
  const samples: Record<string, Sample[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (let r = 0; r < repeat; r++) {
    for (const name of r % 2 === 0 ? names : [...names].reverse()) {
      await writeBackDirtyFiles();
      const s = await variants[name]!.run();
      samples[name]!.push(s);
      console.log(`  ${title} run ${r + 1}/${repeat} ${name.padEnd(10)} ${fmt(s.seconds, 2)} s`);
    }
  }
  const ours = med(samples[names[0]!]!);
  console.log(`\n${title.padEnd(9)}${'what'.padEnd(46)}${'median s'.padStart(9)}${'min s'.padStart(8)}${'ours/x'.padStart(8)}${'client cpu'.padStart(11)}${'server cpu'.padStart(11)}${'cores'.padStart(7)}`);
  for (const name of names) {
    const ss = samples[name]!;
    const m = med(ss);
    const cpu = (f: (s: Sample) => number): string => fmt(median(ss.map(f))).padStart(11);
    console.log(
      `${name.padEnd(9)}${variants[name]!.what.padEnd(46)}${fmt(m, 2).padStart(9)}${fmt(Math.min(...ss.map((s) => s.seconds)), 2).padStart(8)}${fmt(ours / m, 2).padStart(8)}` +
        `${cpu((s) => s.clientCpuS)}${cpu((s) => s.serverCpuS)}${fmt(median(ss.map((s) => (s.clientCpuS + s.serverCpuS) / s.seconds)), 2).padStart(7)}`,
    );
  }
  const probes = samples[names[0]!]!.map((s) => s.probe).filter((p) => p !== undefined);
  if (probes.length) {
    console.log(`  ours' CPU (median): node ${fmt(median(probes.map((p) => p.selfCpuS)))} s, its children (dump tools, compressors) ${fmt(median(probes.map((p) => p.childCpuS)))} s`);
  }
  console.log('');
  return samples;
}

/**
 * Where ours' seconds and CPU go beyond the floor's, per stage, from the medians of one run:
 * mariadb-dump's own CPU is the limit's (it writes to /dev/null), the compressor's is the floor's
 * children minus it; ours' children minus both is what our pipeline adds in subprocesses (the
 * inventory's client), node is our process, mariadbd the server (the inventory's COUNT(*)).
 */
function stagesLine(samples: Record<string, Sample[]>): string {
  const m = (name: string, f: (s: Sample) => number): number => median(samples[name]!.map(f));
  const dump = m('limit', (s) => s.clientCpuS);
  const floorChildren = m('floor', (s) => s.clientCpuS);
  const node = m('ours', (s) => s.probe?.selfCpuS ?? 0);
  const children = m('ours', (s) => s.probe?.childCpuS ?? 0);
  const parts = [
    `wall ours ${fmt(m('ours', (s) => s.seconds), 2)} s vs floor ${fmt(m('floor', (s) => s.seconds), 2)} s`,
    `cpu mariadb-dump ${fmt(dump, 2)} s (limit)`,
    `zstd ${fmt(floorChildren - dump, 2)} s (floor − limit)`,
    `ours: node ${fmt(node, 2)} s, children ${fmt(children, 2)} s (${children >= floorChildren ? '+' : '−'}${fmt(Math.abs(children - floorChildren), 2)} s against the floor's, whose count includes its shells)`,
    `mariadbd ours ${fmt(m('ours', (s) => s.serverCpuS), 2)} s vs floor ${fmt(m('floor', (s) => s.serverCpuS), 2)} s`,
  ];
  return `  stages: ${parts.join('; ')}`;
}

/** Waits (at most a minute) until InnoDB has written its dirty pages back. */
async function flushDirtyPages(srv: MariadbServer): Promise<void> {
  const pct = (await srv.sql('SELECT @@GLOBAL.innodb_max_dirty_pages_pct')).trim();
  await srv.sql('SET GLOBAL innodb_max_dirty_pages_pct = 0');
  try {
    for (let i = 0; i < 120; i++) {
      const dirty = Number((await srv.sql("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'INNODB_BUFFER_POOL_PAGES_DIRTY'")).trim());
      if (!(dirty >= 100)) break;
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    await srv.sql(`SET GLOBAL innodb_max_dirty_pages_pct = ${Number(pct)}`);
  }
}

function latestManifest(dumpsDir: string): Manifest {
  return JSON.parse(readFileSync(join(dumpsDir, 'latest', 'manifest.json'), 'utf8')) as Manifest;
}

async function main(): Promise<void> {
  const t00 = performance.now();
  console.log(`bench:dumps  sections=${[...only].join(',')} dbs=${opts.dbs} mb=${opts.mb} big-mb=${opts.bigMb} tiny=${opts.tiny} inodes=${opts.inodes} repeat=${opts.repeat} concurrency=${CONCURRENCY}  work=${work}`);
  const serverTmp = join(work, 'tmp'); // not /tmp: other jobs' /tmp cleanups removed its temp tables
  mkdirSync(serverTmp);
  server = await startMariadb({
    baseDir: work,
    // A buffer pool that holds the timed databases; a large redo log and relaxed flushing speed
    // up generation and the restores alike (the same for every loader).
    serverArgs: [`--innodb-buffer-pool-size=${flags['buffer-pool'] ?? (flags.quick ? '256M' : '1G')}`, '--innodb-log-file-size=512M', '--innodb-flush-log-at-trx-commit=2', '--innodb-doublewrite=0', `--tmpdir=${serverTmp}`, '--max-connections=500'],
  });
  const srv = server;
  const pid = srv.pid;
  console.log(`MariaDB ${srv.version}, pid ${pid}`);
  const result: Record<string, string> = {};
  const ratio = (a: number, b: number): string => (a / b).toFixed(2);

  // Generation (not part of any ratio). The big database first, so the small ones are the most
  // recently touched when the timed runs start.
  const big = bigDatabase(opts.bigMb);
  const dbs = planDatabases(opts.dbs, opts.mb);
  let t0 = performance.now();
  const needBig = want('big') || want('restore');
  const needMany = want('many') || want('latency');
  if (needBig) await generate(srv, [big]);
  if (needMany) await generate(srv, dbs);
  const dataMb = dbs.reduce((n, d) => n + d.dataBytes, 0) / MB;
  console.log(`generated in ${fmt(secs(t0))} s: ${needMany ? `${dbs.length} databases, ${fmt(dataMb)} MB of table data (${dbs.filter((d) => d.myisam).length} with MyISAM)` : ''}${needBig ? `; big database ${fmt(big.dataBytes / MB)} MB` : ''}`);
  result.dbs = String(dbs.length);
  result.mb = String(Math.round(needMany ? dataMb : big.dataBytes / MB));

  const sectionRoot = (name: string): { config: string; dumpsDir: string } => {
    const root = join(work, `root-${name}`);
    mkdirSync(root, { recursive: true });
    return { config: join(work, `config-${name}.yaml`), dumpsDir: join(root, 'var/backup/apiscp-backup') };
  };
  const manyRegex = '^site[0-9]+_wp\\.';
  let manyMedians: Record<string, number> = {};

  if (want('many') || want('latency')) {
    const s = sectionRoot('many');
    writeConfig(s.config, dirname(dirname(dirname(s.dumpsDir))), srv.socket, dbs.map((d) => d.name), settings);
    t0 = performance.now();
    const sql = await sqlBytes(srv.socket, dbs);
    await runOurs(CLI, PROBE, s.config, s.dumpsDir);
    await runMydumper(srv.socket, manyRegex, join(work, 'mydumper-many'));
    console.log(`warm-up in ${fmt(secs(t0))} s: ${fmt(sql / MB)} MB of SQL`);
    const samples = await compare('many', {
      ours: { what: `CLI dump, ${CONCURRENCY} at a time (defaults)`, run: () => runOurs(CLI, PROBE, s.config, s.dumpsDir, pid) },
      mydumper: { what: 'mydumper -t 2 -c -G -E -R', run: () => runMydumper(srv.socket, manyRegex, join(work, 'mydumper-many'), [], pid) },
      floor: { what: `mariadb-dump | zstd -1 > file, ${CONCURRENCY} at a time`, run: () => runFloor(srv.socket, dbs, CONCURRENCY, join(work, 'floor'), pid) },
      baseline: { what: 'mariadb-dump | gzip > file, sequential', run: () => runBaseline(srv.socket, dbs, join(work, 'baseline'), pid) },
      limit: { what: `mariadb-dump > /dev/null, ${CONCURRENCY} at a time`, run: () => runLimit(srv.socket, dbs, CONCURRENCY, pid) },
    }, want('many') ? opts.repeat : 1);
    manyMedians = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, med(v)]));
    if (want('many')) {
      const o = manyMedians.ours!;
      result.vs_mydumper = ratio(o, manyMedians.mydumper!);
      result.vs_floor = ratio(o, manyMedians.floor!);
      result.vs_baseline = ratio(o, manyMedians.baseline!);
      console.log(`  ${fmt(sql / MB)} MB of SQL: ours ${fmt(sql / MB / o)} MB/s; mariadb-dump alone (limit) costs ${fmt(median(samples.limit!.map((x) => x.clientCpuS)))} s CPU, the rest of ours' children is compression and pipes`);
      console.log(stagesLine(samples));
      // Sites blocked: every lock-tables (MyISAM) database's tables were locked this long.
      const locked = latestManifest(s.dumpsDir).entries.filter((e) => e.lockHeldMs !== undefined);
      console.log(`  MyISAM table locks held (ours, last run): ${locked.map((e) => `${e.database} ${e.lockHeldMs} ms`).join(', ') || 'none'}; longest ${Math.max(0, ...locked.map((e) => e.lockHeldMs!))} ms\n`);
    }
  }

  let bigDumpFile: string | undefined;
  let bigConfig: string | undefined;
  if (needBig) {
    const s = sectionRoot('big');
    writeConfig(s.config, dirname(dirname(dirname(s.dumpsDir))), srv.socket, [big.name], settings);
    const bigRegex = `^${big.name}\\.`;
    await runOurs(CLI, PROBE, s.config, s.dumpsDir); // warm-up
    const samples = await compare('big', {
      ours: { what: `CLI dump of ${big.name} alone (defaults)`, run: () => runOurs(CLI, PROBE, s.config, s.dumpsDir, pid) },
      mydumper: { what: 'mydumper -t 2 -c -G -E -R -r 200000', run: () => runMydumper(srv.socket, bigRegex, join(work, 'mydumper-big'), ['-r', '200000'], pid) },
    }, want('big') ? opts.repeat : 1);
    const entry = latestManifest(s.dumpsDir).entries.find((e) => e.database === big.name)!;
    bigDumpFile = join(s.dumpsDir, 'latest', entry.path!);
    bigConfig = s.config;
    const rss = Math.max(...samples.ours!.map((x) => (x.probe?.peakRssKb ?? 0) / 1024));
    if (want('big')) {
      result.big_vs_mydumper = ratio(med(samples.ours!), med(samples.mydumper!));
      result.peak_rss_mb = String(Math.round(rss));
      console.log(`  ${big.name}: ${fmt(big.dataBytes / MB)} MB of table data, our dump ${fmt(entry.bytes! / MB)} MB; peak RSS of our process ${Math.round(rss)} MB\n`);
    }
  }

  if (want('tiny')) {
    t0 = performance.now();
    const names = await generateTiny(srv, opts.tiny);
    console.log(`generated ${names.length} tiny databases in ${fmt(secs(t0))} s`);
    const s = sectionRoot('tiny');
    writeConfig(s.config, dirname(dirname(dirname(s.dumpsDir))), srv.socket, ['tiny*'], settings);
    await runOurs(CLI, PROBE, s.config, s.dumpsDir); // warm-up
    // Another build's CLI on the same databases, its own dumps directory (its own previous run).
    const other = flags.against ? { cli: join(flags.against, 'apiscp-backup.js'), probe: join(flags.against, 'bench', 'rss-probe.js'), root: sectionRoot('tiny-against') } : undefined;
    if (other) {
      writeConfig(other.root.config, dirname(dirname(dirname(other.root.dumpsDir))), srv.socket, ['tiny*'], settings);
      await runOurs(other.cli, other.probe, other.root.config, other.root.dumpsDir); // warm-up
    }
    const samples = await compare('tiny', {
      ours: { what: `CLI dump of ${names.length} tiny databases`, run: () => runOurs(CLI, PROBE, s.config, s.dumpsDir, pid) },
      loop: { what: 'xargs -P2: mariadb-dump | zstd > file', run: () => runTinyLoop(srv.socket, names, join(work, 'tiny-loop'), pid) },
      ...(other ? { against: { what: `--against ${flags.against}`, run: () => runOurs(other.cli, other.probe, other.root.config, other.root.dumpsDir, pid) } } : {}),
    });
    result.tiny_vs_loop = ratio(med(samples.ours!), med(samples.loop!));
    if (samples.against) {
      const cpu = (name: string): number => median(samples[name]!.map((x) => x.probe?.selfCpuS ?? 0));
      console.log(`  --against: tiny_vs_loop ours ${result.tiny_vs_loop}, against ${ratio(med(samples.against), med(samples.loop!))}; node CPU ours ${fmt(cpu('ours'), 2)} s, against ${fmt(cpu('against'), 2)} s`);
      console.log(`  --against: wall per run ours ${samples.ours!.map((x) => fmt(x.seconds, 2)).join(' ')}, against ${samples.against.map((x) => fmt(x.seconds, 2)).join(' ')}, loop ${samples.loop!.map((x) => fmt(x.seconds, 2)).join(' ')}`);
    }
    const o = med(samples.ours!);
    const l = med(samples.loop!);
    console.log(`  per database: ours ${fmt((o * 1000) / names.length, 2)} ms, loop ${fmt((l * 1000) / names.length, 2)} ms (wall, 2 at a time)\n`);
  }

  if (want('acl')) {
    t0 = performance.now();
    const tree = join(work, 'acl-tree');
    const made = await makeAclTree(tree, opts.inodes);
    console.log(`acl tree: ${made.inodes} inodes, all with an extended ACL, ${made.xattrs} with a user xattr, in ${fmt(secs(t0))} s`);
    const sidecar = join(work, 'fs-acls.zst');
    const raw = join(work, 'raw-acls');
    await runRawSidecar(tree, raw); // warm-up: the inodes in the cache
    const side = await compare('sidecar', {
      ours: { what: 'writeAclSidecar (getfacl + getfattr | zstd)', run: () => runOurSidecar(tree, sidecar) },
      raw: { what: 'getfacl -R | zstd; getfattr -R | zstd', run: () => runRawSidecar(tree, raw) },
    });
    const rest = await compare('aclrest', {
      ours: { what: 'restoreAcls (restore acls)', run: () => runOurAclRestore(sidecar) },
      raw: { what: 'zstd -dc | setfacl --restore; … | setfattr --restore', run: () => runRawAclRestore(raw) },
    });
    result.sidecar_vs_raw = ratio(med(side.ours!), med(side.raw!));
    console.log(`  restore acls vs raw: ${ratio(med(rest.ours!), med(rest.raw!))} (target ≤ 1.5)\n`);
    result.acl_restore_vs_raw = ratio(med(rest.ours!), med(rest.raw!));
  }

  if (want('restore') && bigDumpFile) {
    const target = 'restored_wp';
    // Each load starts on a clean buffer pool: without this, the previous load's dirty pages
    // were flushed during the next one and counted as its server CPU (33-42 s for the same load).
    const fresh = async (create: boolean): Promise<void> => {
      await srv.sql(`DROP DATABASE IF EXISTS ${target};${create ? ` CREATE DATABASE ${target};` : ''}`);
      await flushDirtyPages(srv);
    };
    const file = bigDumpFile;
    const samples = await compare('restore', {
      ours: { what: `CLI restore db ${big.name} --into (2 connections)`, run: async () => (await fresh(false), runOurRestore(CLI, PROBE, bigConfig!, big.name, target, pid)) },
      myloader: { what: 'myloader -t 2 (from mydumper -r 200000)', run: async () => (await fresh(false), runMyloader(srv.socket, join(work, 'mydumper-big'), target, pid)) },
    }, Math.min(opts.repeat, 2));
    result.restore_vs_myloader = ratio(med(samples.ours!), med(samples.myloader!));
    // The one-stream load is context, not a target: once (it is the slowest, ~80 s per GB here).
    await fresh(true);
    const pipe = await runPipeRestore(srv.socket, file, target, pid);
    console.log(`  one stream, for comparison: zstd -dc | mariadb ${fmt(pipe.seconds, 2)} s (ours/x ${ratio(med(samples.ours!), pipe.seconds)})\n`);
    await fresh(false);
  }

  if (want('latency')) {
    await prepareSysbench(srv);
    const s = sectionRoot('many');
    const idleS = flags.quick ? 1 : 8;
    const rounds = flags.quick ? 1 : 2;
    const gentle = join(work, 'config-gentle.yaml');
    writeConfig(gentle, dirname(dirname(dirname(s.dumpsDir))), srv.socket, dbs.map((d) => d.name), defaults);
    // dumps.max_rate, the knob that trades time for the sites' latency: a few of the databases
    // (~15 s at PACED_RATE), in a root of their own (its runs are not the many section's).
    const { config: paced, dumpsDir: pacedDumps } = sectionRoot('paced');
    const pacedDbs = dbs.slice(0, Math.max(1, Math.round(dbs.length / 5)));
    writeConfig(paced, dirname(dirname(dirname(pacedDumps))), srv.socket, pacedDbs.map((d) => d.name), { ...defaults, maxRate: PACED_RATE });
    const p99s: Record<string, number[]> = { idle: [], ours: [], 'ours-paced': [], mydumper: [], baseline: [], 'idle-hog': [] };
    const during: Record<string, () => Promise<unknown>> = {
      'idle-hog': () => idleCpuHog(idleS),
      ours: () => runOurs(CLI, PROBE, gentle, s.dumpsDir, pid),
      'ours-paced': () => runOurs(CLI, PROBE, paced, pacedDumps, pid),
      mydumper: () => runMydumper(srv.socket, manyRegex, join(work, 'mydumper-many'), [], pid),
      baseline: () => runBaseline(srv.socket, dbs, join(work, 'baseline'), pid),
    };
    for (let r = 0; r < rounds; r++) {
      for (const name of r % 2 === 0 ? Object.keys(p99s) : Object.keys(p99s).reverse()) {
        await writeBackDirtyFiles(); // the previous tool's files are not written back in this one's window
        // sysbench runs for 90 % of the tool's 'many' time; the paced dump (~15 s) gets idleS's.
        const window = name === 'ours-paced' ? idleS : (manyMedians[name] ?? idleS);
        const l: Latency = name === 'idle' ? await sysbenchP99(srv.socket, idleS) : await p99While(srv.socket, window, during[name]!);
        p99s[name]!.push(l.p99Ms);
        console.log(`  latency round ${r + 1}/${rounds} ${name.padEnd(9)} p99 ${fmt(l.p99Ms, 2)} ms (${l.transactions} transactions)`);
      }
    }
    const idle = median(p99s.idle!);
    console.log(`\nlatency  sysbench p99 (4 point selects + 1 update per transaction, 100/s) on another database: idle ${fmt(idle, 2)} ms; ` +
      ['ours', 'mydumper', 'baseline'].map((n) => `while ${n} dumps ${fmt(median(p99s[n]!), 2)} ms (${ratio(median(p99s[n]!), idle)}× idle)`).join(', ') +
      `; beside one SCHED_IDLE busy loop (no dump can be gentler) ${fmt(median(p99s['idle-hog']!), 2)} ms (${ratio(median(p99s['idle-hog']!), idle)}× idle)\n`);
    result.p99_ratio = ratio(median(p99s.ours!), idle);
    result.p99_idle_hog_ratio = ratio(median(p99s['idle-hog']!), idle);
    result.p99_paced_ratio = ratio(median(p99s['ours-paced']!), idle);
    console.log(`  with dumps.max_rate ${PACED_RATE} (${pacedDbs.length} of the databases): ${fmt(median(p99s['ours-paced']!), 2)} ms (${result.p99_paced_ratio}× idle)\n`);
  }

  await cleanup();
  console.log(`settings: engine=${settings.engine ?? 'none (default)'} compression=${settings.compression ?? 'auto'} level=${settings.level ?? 'default'}; speed sections at nice 0, latency at the default priority; total ${fmt(secs(t00), 0)} s`);
  const keys = ['vs_mydumper', 'big_vs_mydumper', 'vs_floor', 'vs_baseline', 'tiny_vs_loop', 'sidecar_vs_raw', 'restore_vs_myloader', 'p99_ratio', 'peak_rss_mb', 'dbs', 'mb'];
  if (result.acl_restore_vs_raw) console.log(`acl_restore_vs_raw=${result.acl_restore_vs_raw}`);
  if (result.p99_idle_hog_ratio) console.log(`p99_idle_hog_ratio=${result.p99_idle_hog_ratio}`);
  if (result.p99_paced_ratio) console.log(`p99_paced_ratio=${result.p99_paced_ratio}`);
  console.log(`RESULT ${keys.map((k) => `${k}=${result[k] ?? 'n/a'}`).join(' ')}`);
}

main().catch(async (err: unknown) => {
  if (interrupted) return; // the signal handler cleans up and exits; the killed child is no news
  console.error(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  await cleanup();
  process.exit(1);
});
