import { MissingDependencyError } from '../errors.js';
import { cmd, type Command } from '../proc/command.js';
import { resolveTool, whichSystem } from '../proc/which.js';
import type { Compression } from '../model/kind.js';

/** `auto` means zstd when installed (fast, cheap to verify), else gzip (always there). */
export function resolveCompression(setting: 'auto' | Compression): Compression {
  if (setting !== 'auto') {
    if (setting !== 'none' && !whichSystem(setting)) throw new MissingDependencyError(setting, setting, setting);
    return setting;
  }
  return whichSystem('zstd') ? 'zstd' : 'gzip';
}

export function compressionSuffix(c: Compression): string {
  return c === 'zstd' ? '.zst' : c === 'gzip' ? '.gz' : '';
}

/**
 * The compressor stage. `--rsyncable` keeps a small change in a database from reshuffling the
 * whole compressed file, so restic/borg (deduplicating) and duplicity (librsync deltas) store
 * only what changed between nights. It doubles zstd -1's CPU (measured: docs/performance.md),
 * so `auto` turns it on only for those engines: Bacula stores changed files whole, and
 * with `none` we cannot know what reads the files (set `rsyncable: true` for rsync-based tools).
 */
export function wantRsyncable(setting: 'auto' | boolean, engine: string): boolean {
  return setting === 'auto' ? DELTA_ENGINES.has(engine) : setting;
}

const DELTA_ENGINES = new Set(['restic', 'borg', 'duplicity']);

/** Default levels for the dumps: zstd -1 costs half of -3's CPU for ~2-4 % more bytes (measured). */
export const DUMP_LEVEL: Readonly<Record<Compression, number | undefined>> = { zstd: 1, gzip: 6, none: undefined };

/** `threads` > 1: zstd compresses in that many worker threads (a database dumped alone). */
export function compressorCommand(c: Compression, level?: number, rsyncable = true, threads = 1): Command | undefined {
  const sync = rsyncable ? ['--rsyncable'] : [];
  const mt = threads > 1 ? [`-T${threads}`] : [];
  if (c === 'zstd') return cmd(resolveTool('zstd'), ['-q', '-c', `-${level ?? 3}`, ...mt, ...sync]);
  if (c === 'gzip') return cmd(resolveTool('gzip'), ['-c', `-${level ?? 6}`, ...sync, '-n']);
  return undefined;
}

/** Writes the decompressed content of `file` to stdout ('none': cat); `--` so a name is never an option. */
export function decompressorCommand(c: Compression, file: string): Command {
  const name = c === 'zstd' ? 'zstd' : c === 'gzip' ? 'gzip' : 'cat';
  const bin = whichSystem(name);
  if (!bin) throw new MissingDependencyError(name, name === 'cat' ? 'coreutils' : name, name === 'cat' ? 'coreutils' : name);
  const args = c === 'zstd' ? ['-q', '-d', '-c'] : c === 'gzip' ? ['-d', '-c'] : [];
  return cmd(bin, [...args, '--', file]);
}

/** What a file's first bytes say it is (zstd frame or gzip member magic), else 'none'. */
export function sniffCompression(head: Buffer): Compression {
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  return 'none';
}
