import { randomBytes } from 'node:crypto';
import { closeSync, fchmodSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * A hidden temporary name in the same directory (rename must not cross filesystems). It starts
 * with a dot and ends in neither `.prom` nor a cron-runnable name: node-exporter's textfile
 * collector, Debian's and RHEL's run-parts and our own readers all skip it.
 */
export function tempNameFor(file: string): string {
  return join(dirname(file), `.${basename(file)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** fsync a directory so a rename inside it survives a crash. */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Some filesystems refuse fsync on a directory; the rename itself already happened.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

export interface AtomicWriteOptions {
  /** Mode of the result, set exactly (the umask does not narrow it). Default 0600. */
  mode?: number;
  /** Mode of directories created on the way. Default 0700. */
  dirMode?: number;
  /** false: no fsync here, the caller makes it durable later (a dump run's one syncfs). Default true. */
  sync?: boolean;
}

/**
 * Write a whole file so readers see either the old or the new content, never half of it: temp
 * file in the same directory ('wx': never follow a planted symlink), fsync, rename over, fsync
 * the directory. Used for manifests, state, pins, the cron entry, configs and metrics.
 */
export function writeFileAtomic(file: string, data: string | Buffer, options: AtomicWriteOptions = {}): void {
  const dir = dirname(file);
  mkdirSync(dir, { recursive: true, mode: options.dirMode ?? 0o700 });
  const temp = tempNameFor(file);
  const mode = options.mode ?? 0o600;
  let fd: number | undefined;
  try {
    fd = openSync(temp, 'wx', mode);
    fchmodSync(fd, mode);
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    if (options.sync !== false) fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(temp, file);
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    rmSync(temp, { force: true });
    throw err;
  }
  if (options.sync !== false) fsyncDir(dir);
}
