import { MissingDependencyError } from '../errors.js';
import { cmd, type Command } from '../run/command.js';
import { resolveTool, whichSystem } from '../run/which.js';
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
 * whole compressed file, so restic/borg/duplicity (and rsync-based tools) store only what changed
 * between nights. Bacula stores changed files whole, so there it is only CPU (about 30% of zstd's).
 */
export function wantRsyncable(setting: 'auto' | boolean, engine: string): boolean {
  return setting === 'auto' ? engine !== 'bacula' : setting;
}

export function compressorCommand(c: Compression, level?: number, rsyncable = true): Command | undefined {
  const sync = rsyncable ? ['--rsyncable'] : [];
  if (c === 'zstd') return cmd(resolveTool('zstd'), ['-q', '-c', `-${level ?? 3}`, ...sync]);
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
