import { availableParallelism, loadavg } from 'node:os';
import type { Config } from '../config/schema.js';
import type { Command } from '../proc/command.js';
import { compressorCommand, DUMP_LEVEL, resolveCompression, wantRsyncable } from './compress.js';
import type { Compression } from '../model/kind.js';

/**
 * How one run dumps, decided once from the config, the machine and the plan: the defaults here
 * were chosen from `npm run bench:dumps` figures (docs/performance.md).
 */
export interface DumpTuning {
  readonly compression: Compression;
  /** The compressor stage every compressible dump goes through (undefined: none). */
  readonly compressor: Command | undefined;
  readonly concurrency: number;
  /** zstd worker threads per dump. */
  readonly threads: number;
  /** 'run': one syncfs before the manifest; 'file': fsync every dump as it is written. */
  readonly sync: 'run' | 'file';
}

export function dumpTuning(config: Config, items: number, cores = availableParallelism(), load = loadavg()[0] ?? 0): DumpTuning {
  const d = config.dumps;
  const compression = resolveCompression(d.compression);
  const concurrency = d.concurrency === 'auto' ? autoConcurrency(cores, load) : d.concurrency;
  // mariadb-dump and a single-threaded zstd each keep one core busy: a database dumped alone
  // (one in the plan, or fewer than the slots) leaves the other cores to zstd's workers.
  const alone = Math.max(1, Math.min(concurrency, items));
  const threads = d.threads === 'auto' ? (compression === 'zstd' ? Math.max(1, Math.floor(cores / alone)) : 1) : d.threads;
  const rsyncable = wantRsyncable(d.rsyncable, config.engine);
  return { compression, compressor: compressorCommand(compression, d.level ?? DUMP_LEVEL[compression], rsyncable, threads), concurrency, threads, sync: d.sync };
}

/**
 * `dumps.concurrency: auto`: the cores not already busy when the run starts (one dump keeps
 * about one core busy between mariadb-dump, the compressor and the server thread), at least 1,
 * at most 8 (more parallel dumps only contend for the disk).
 */
export function autoConcurrency(cores: number, load: number): number {
  return Math.max(1, Math.min(8, cores, Math.round(cores - load)));
}
