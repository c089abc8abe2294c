/**
 * The performance work (issue 10) against real components: streaming verification through real
 * pipes, the server pacer against real busy statements, the process priority as the kernel
 * reports it, the MyISAM lock time in a real run's manifest, and `npm run bench:dumps -- --quick`
 * (that it runs to its RESULT line; the figures are for the full run). The parallel loader's
 * correctness tests are beside it: test/kinds/mysql/load/parallel.test.ts.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadedConfig } from '../lib/config/load.js';
import { configSchema } from '../lib/config/schema.js';
import { mysqlKind, type MysqlSession } from '../lib/kinds/mysql/index.js';
import { StreamTail } from '../lib/dumps/tail-check.js';
import { planAndDump } from '../lib/job/dump-step.js';
import { ServerPacer } from '../lib/dumps/throttle.js';
import { autoConcurrency, dumpTuning } from '../lib/dumps/tuning.js';
import { memoryLogger } from '../lib/log.js';
import { cmd } from '../lib/proc/command.js';
import { mapSqlDump } from '../lib/kinds/mysql/load/parallel.js';
import { pipeToFile } from '../lib/proc/pipeline.js';
import { RateLimit } from '../lib/proc/rate-limit.js';
import { withPriority } from '../lib/proc/priority.js';
import { run } from '../lib/proc/run.js';
import { startMariadb, type MariadbServer } from '../lib/throwaway/mariadb.js';
import { mysqlOnlyConfig, SRC_DATABASE_SQL } from './helpers/mysql-src.js';

let server: MariadbServer;
let work: string;

function loaded(extra: Record<string, unknown> = {}, mysql: Record<string, unknown> = {}): LoadedConfig {
  return mysqlOnlyConfig(work, server.socket, extra, mysql);
}

async function session(): Promise<MysqlSession> {
  return (await mysqlKind.open({ loaded: loaded(), log: memoryLogger() })) as MysqlSession;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'asb-perf-'));
  server = await startMariadb();
  await server.sql(SRC_DATABASE_SQL);
}, 120_000);

afterAll(async () => {
  await server?.destroy();
  await rm(work, { recursive: true, force: true });
});


describe('streaming verification (pipeToFile tap)', () => {
  it('sees every byte of the tapped stage and still writes the compressed file', async () => {
    const src = join(work, 'tap-src.txt');
    const text = Array.from({ length: 200000 }, (_, i) => `row ${i}\n`).join('') + '-- Dump completed on today\n';
    await writeFile(src, text);
    const chunks: Buffer[] = [];
    const memories = new Set<ArrayBufferLike>();
    const tail = new StreamTail(100);
    const out = join(work, 'tap.zst');
    // Copied: a chunk is valid only during the call, the relay reads into one buffer again.
    const onData = (c: Buffer) => {
      chunks.push(Buffer.from(c));
      memories.add(c.buffer);
      tail.update(c);
    };
    await pipeToFile([cmd('cat', [src]), cmd('zstd', ['-q', '-c'])], out, { tap: { after: 0, onData }, fsync: false });
    expect(Buffer.concat(chunks).toString() === text).toBe(true);
    expect(chunks.length).toBeGreaterThan(4); // 2.3 MB: many reads
    expect(memories.size).toBe(1); // all into the same memory: no Buffer per read
    expect(tail.text()).toBe(text.slice(-100));
    expect((await run(cmd('zstd', ['-q', '-dc', out]))).stdout).toBe(text);
  });

  it('StreamTail keeps the last bytes of chunks of any size, each valid only during its call', () => {
    const stream = Buffer.from(Array.from({ length: 5000 }, (_, i) => `${i},`).join(''));
    const tail = new StreamTail(64);
    const scratch = Buffer.alloc(300);
    let at = 0;
    for (let i = 0; at < stream.length; i++) {
      const n = Math.min(stream.length - at, [1, 7, 63, 64, 65, 300, 2][i % 7]!);
      stream.copy(scratch, 0, at, at + n);
      tail.update(scratch.subarray(0, n));
      scratch.fill(0x2a); // the caller reuses its buffer: nothing may point into it
      at += n;
      if (i === 0) expect(tail.text()).toBe('0');
    }
    expect(tail.text()).toBe(stream.subarray(-64).toString());
  });

  it('a tap that throws fails the pipeline (the compressor saw a short input and exited 0)', async () => {
    const src = join(work, 'tap-src.txt');
    const err = await pipeToFile([cmd('cat', [src]), cmd('zstd', ['-q', '-c'])], join(work, 'tap2.zst'), {
      tap: { after: 0, onData: () => { throw new Error('check exploded'); } },
    }).catch((e: unknown) => e);
    // The cause, not the SIGPIPE it left the tapped stage with (2.3 MB: cat is still writing).
    expect(String(err)).toMatch(/relaying its output failed: check exploded/);
  });

  it('dumpPlan records how long a MyISAM database held its table locks, and only for it', async () => {
    const result = await planAndDump({ loaded: loaded({}, { include: ['src', 'copy1'], dump_users: false }), log: memoryLogger(), kinds: [mysqlKind], siteOf: () => undefined });
    expect(result.ok).toBe(true);
    const src = result.manifest.entries.find((e) => e.database === 'src')!;
    expect(src.lockMode).toBe('lock-tables');
    expect(src.lockHeldMs).toBeGreaterThan(0);
    expect(src.lockHeldMs).toBeLessThanOrEqual(src.durationMs);
    // copy1 has the MyISAM table too; a database of InnoDB only holds none.
    await server.sql('CREATE DATABASE inno; CREATE TABLE inno.t (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO inno.t VALUES (1)');
    const second = await planAndDump({ loaded: loaded({}, { include: ['inno'], dump_users: false }), log: memoryLogger(), kinds: [mysqlKind], siteOf: () => undefined });
    const inno = second.manifest.entries.find((e) => e.database === 'inno')!;
    expect(inno.lockMode).toBe('single-transaction');
    expect(inno.lockHeldMs).toBeUndefined();
    // Verified while streaming: the file on disk is complete.
    const file = join(second.dir, inno.path!);
    expect((await run(cmd('zstd', ['-q', '-dc', file]))).stdout).toMatch(/-- Dump completed/);
  }, 120_000);

  it('a database whose last dump was small goes through files started by the spawner: the same verified dump, the lock time, failures still fail', async () => {
    await server.sql('CREATE DATABASE small_ok; CREATE TABLE small_ok.t (id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB; INSERT INTO small_ok.t VALUES (1, REPEAT("x", 300)), (2, "y")');
    await server.sql('CREATE DATABASE small_bad; CREATE TABLE small_bad.t (a INT) ENGINE=InnoDB');
    await server.sql('CREATE DATABASE small_my; USE small_my; CREATE TABLE small_my.hits (id INT PRIMARY KEY, n INT) ENGINE=MyISAM; INSERT INTO small_my.hits SELECT seq, seq FROM seq_1_to_500');
    const dumpsOf = async (): Promise<{ result: Awaited<ReturnType<typeof planAndDump>>; via: Map<string, unknown> }> => {
      const log = memoryLogger();
      const result = await planAndDump({ loaded: loaded({}, { include: ['small_*'], dump_users: false }), log, kinds: [mysqlKind], siteOf: () => undefined });
      return { result, via: new Map(log.entries.filter((e) => e.msg.startsWith('dumped ')).map((e) => [e.fields.database as string, e.fields.via])) };
    };
    // No previous size: kernel pipes, as for any database the first time.
    const first = await dumpsOf();
    expect(first.result.ok).toBe(true);
    expect(first.via.get('small_ok')).toBe('pipes');
    const good = first.result.manifest.entries.find((e) => e.database === 'small_ok')!;

    await server.sql('USE small_bad; CREATE VIEW v AS SELECT a FROM t; DROP TABLE t');
    const second = await dumpsOf();
    expect(second.via.get('small_ok')).toBe('files');
    expect(second.via.get('small_my')).toBe('files');
    const ok = second.result.manifest.entries.find((e) => e.database === 'small_ok')!;
    expect(ok.status).toBe('ok');
    const bytes = readFileSync(join(second.result.dir, ok.path!));
    expect(ok.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(ok.bytes).toBe(bytes.length);
    const text = (await run(cmd('zstd', ['-q', '-dc', join(second.result.dir, ok.path!)]))).stdout;
    expect(text).toMatch(/INSERT INTO `t` VALUES\s*\(1,'x{300}'\),\s*\(2,'y'\);/);
    expect(text).toMatch(/-- Dump completed/);
    // The MyISAM database's lock time is its dump stage alone (the compression runs after it).
    const myisam = second.result.manifest.entries.find((e) => e.database === 'small_my')!;
    expect(myisam.lockMode).toBe('lock-tables');
    expect(myisam.lockHeldMs).toBeGreaterThan(0);
    expect(myisam.lockHeldMs).toBeLessThan(myisam.durationMs);
    // A dump that fails on this path fails the run, names the tool and leaves no file behind.
    expect(second.result.ok).toBe(false);
    const bad = second.result.manifest.entries.find((e) => e.database === 'small_bad')!;
    expect(bad.status).toBe('failed');
    expect(bad.error?.message).toMatch(/^mariadb-dump: exited with 2: .*small_bad/);
    expect(bad.path).toBeUndefined();
    expect(readdirSync(second.result.dir, { recursive: true }).map(String).filter((f) => f.includes('small_bad') || f.includes('.stage'))).toEqual([]);
    // The first run's good dump of it is still there and still what the manifest says.
    expect(createHash('sha256').update(readFileSync(join(first.result.dir, good.path!))).digest('hex')).toBe(good.sha256);
    await server.sql('DROP DATABASE small_ok; DROP DATABASE small_bad; DROP DATABASE small_my');
  }, 120_000);
});

describe('pacing and priority', () => {
  it('waits while the server runs more statements than threads_running, then dumps', async () => {
    const s = await session();
    try {
      const log = memoryLogger();
      const pacer = new ServerPacer({ threads_running: 2, max_wait: '1m' }, log, 2, 200);
      const sleepers = Array.from({ length: 4 }, () => server.sql('SELECT SLEEP(2)'));
      await new Promise((r) => setTimeout(r, 300));
      const t0 = Date.now();
      await pacer.run(s, 'mysql x', async () => undefined);
      const waited = Date.now() - t0;
      await Promise.all(sleepers);
      expect(waited).toBeGreaterThan(1000);
      expect(log.entries.some((e) => /paused .* server was busy \(\d+ statements running, threshold 2\)/.test(e.msg))).toBe(true);
      // An idle server: no wait at all.
      const t1 = Date.now();
      await pacer.run(s, 'mysql y', async () => undefined);
      expect(Date.now() - t1).toBeLessThan(1000);
    } finally {
      await s.close();
    }
  }, 60_000);

  it('dumps.max_rate holds every dump together to that much SQL per second, through pipes and through files', async () => {
    const limit = new RateLimit(4 << 20);
    const t0 = performance.now();
    // Two streams at once, 1 MiB each in 64 KiB chunks: 2 MiB at 4 MiB/s together, not each.
    await Promise.all([0, 1].map(async () => { for (let i = 0; i < 16; i++) await limit.take(64 << 10); }));
    const took = performance.now() - t0;
    expect(took).toBeGreaterThan(350); // 500 ms, less the 100 ms credited up front
    expect(took).toBeLessThan(3000);
    // A run stopped meanwhile (SIGTERM, its time limit) does not sit out the wait: 10 s owed, 0.2 s waited.
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 200);
    const t1 = performance.now();
    await new RateLimit(1 << 20).take(10 << 20, stop.signal);
    expect(performance.now() - t1).toBeLessThan(5000);

    const config = { include: ['src', 'small_paced'], dump_users: false };
    await server.sql('CREATE DATABASE IF NOT EXISTS small_paced; USE small_paced; CREATE TABLE IF NOT EXISTS small_paced.t (id INT PRIMARY KEY, v TEXT); INSERT IGNORE INTO small_paced.t SELECT seq, REPEAT(\'y\', 2000) FROM seq_1_to_1000');
    const free = await planAndDump({ loaded: loaded({}, config), log: memoryLogger(), kinds: [mysqlKind], siteOf: () => undefined });
    const paced = await planAndDump({ loaded: loaded({ dumps: { max_rate: '2M' } }, config), log: memoryLogger(), kinds: [mysqlKind], siteOf: () => undefined });
    expect(free.ok && paced.ok).toBe(true);
    const entry = (r: typeof free, db: string) => r.manifest.entries.find((e) => e.database === db)!;
    // src streams (its map says how much SQL went by); small_paced (2 MB of SQL, a few KB
    // compressed) went through files the second time: its slot waited out its share instead.
    const sql = (await mapSqlDump(join(paced.dir, entry(paced, 'src').path!), 'zstd')).bytes;
    expect(entry(paced, 'src').durationMs).toBeGreaterThan((0.8 * 1000 * sql) / (2 << 20));
    expect(entry(paced, 'src').durationMs).toBeGreaterThan(2 * entry(free, 'src').durationMs);
    expect(entry(paced, 'small_paced').durationMs).toBeGreaterThan(600); // ~2 MB at 2 MiB/s
    expect(() => configSchema.parse({ dumps: { max_rate: '512K' } })).toThrow(/at least 1M per second/);
    expect(() => configSchema.parse({ dumps: { max_rate: 'fast' } })).toThrow(/a rate like 10M/);
    expect(configSchema.parse({}).dumps.max_rate).toBe('0');
  }, 120_000);

  it('starts anyway after max_wait (a late backup beats none)', async () => {
    const s = await session();
    try {
      const log = memoryLogger();
      const pacer = new ServerPacer({ threads_running: 1, max_wait: '500ms' }, log, 2, 100);
      const sleepers = Array.from({ length: 3 }, () => server.sql('SELECT SLEEP(3)'));
      await new Promise((r) => setTimeout(r, 300));
      const t0 = Date.now();
      await pacer.run(s, 'mysql z', async () => undefined);
      expect(Date.now() - t0).toBeLessThan(2500);
      expect(log.entries.some((e) => /still busy .* dumping mysql z anyway/.test(e.msg))).toBe(true);
      await Promise.all(sleepers);
    } finally {
      await s.close();
    }
  }, 60_000);

  it('children run at the configured nice and ionice class, and ours is restored afterwards', async () => {
    const stat = async (): Promise<{ nice: number; io: string }> => {
      const r = await run(cmd('bash', ['-c', 'cut -d" " -f19 /proc/$$/stat; ionice -p $$']));
      const [nice, io] = r.stdout.split('\n');
      return { nice: Number(nice), io: io ?? '' };
    };
    const before = await stat();
    const inside = await withPriority({ nice: 15, ionice: 'idle' }, memoryLogger(), stat);
    expect(inside.nice).toBe(15);
    expect(inside.io).toBe('idle');
    expect(await stat()).toEqual(before);
  });

  it('concurrency auto follows idle cores; zstd threads go to a database dumped alone', () => {
    expect(autoConcurrency(2, 0)).toBe(2);
    expect(autoConcurrency(2, 1.7)).toBe(1);
    expect(autoConcurrency(32, 4)).toBe(8);
    const cfg = loaded({ dumps: { compression: 'zstd' } }).config;
    // One database alone gets every core; 2 at a time on 2 cores, one thread each (on 4 cores, 2).
    expect(dumpTuning(cfg, 1, 4, 0).compressor?.args).toContain('-T4');
    expect(dumpTuning(cfg, 30, 2, 0).compressor?.args).toEqual(['-q', '-c', '-1']);
    expect(dumpTuning(cfg, 30, 4, 0).compressor?.args).toContain('-T2');
    expect(dumpTuning(loaded({ engine: 'restic', dumps: { compression: 'zstd' } }).config, 30, 4, 0).compressor?.args).toContain('--rsyncable');
  });
});

describe('npm run bench:dumps -- --quick', () => {
  it('runs every section and ends with one RESULT line of numbers', async () => {
    const r = await execa(process.execPath, [join('dist', 'scripts', 'bench-dumps.js'), '--quick'], { reject: false, all: true, timeout: 170_000 });
    expect(r.exitCode, r.all).toBe(0);
    const lines = (r.stdout as string).trim().split('\n');
    const last = lines[lines.length - 1]!;
    expect(lines.filter((l) => l.startsWith('RESULT ')).length).toBe(1);
    const keys = ['vs_mydumper', 'big_vs_mydumper', 'vs_floor', 'vs_baseline', 'tiny_vs_loop', 'sidecar_vs_raw', 'restore_vs_myloader', 'p99_ratio', 'peak_rss_mb', 'dbs', 'mb'];
    expect(last).toMatch(new RegExp(`^RESULT ${keys.map((k) => `${k}=\\d+(\\.\\d+)?`).join(' ')}$`));
    // The figures are the full run's business; what the quick run can prove: every ratio was measured
    // (a section that fell over prints 0 or nothing), the databases are those the header announced,
    // and our peak RSS stays inside the budget docs/performance.md states (120 MB).
    const result = Object.fromEntries(last.slice('RESULT '.length).split(' ').map((kv) => [kv.split('=')[0]!, Number(kv.split('=')[1])]));
    for (const k of keys.slice(0, 8)) expect(result[k], k).toBeGreaterThan(0);
    const header = lines.find((l) => l.startsWith('bench:dumps '));
    expect(Number(/ dbs=(\d+)/.exec(header ?? '')?.[1]), header).toBe(result.dbs);
    expect(result.peak_rss_mb).toBeGreaterThan(0);
    expect(result.peak_rss_mb).toBeLessThanOrEqual(120);
  }, 180_000);
});
