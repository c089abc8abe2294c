import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** fsync a directory so a rename inside it survives a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const h = await open(dir, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

/** A hidden temporary name in the same directory (rename must not cross filesystems). */
export function tempNameFor(file: string): string {
  return join(dirname(file), `.${basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/**
 * Write a whole file so readers see either the old or the new content, never a half: temp file
 * in the same directory, fsync, rename, fsync the directory.
 */
export async function writeFileAtomic(file: string, data: string | Buffer, mode = 0o600): Promise<void> {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = tempNameFor(file);
  const h = await open(tmp, 'wx', mode);
  try {
    await h.writeFile(data);
    await h.sync();
    await h.close();
    await rename(tmp, file);
    await fsyncDir(dirname(file));
  } catch (err) {
    await h.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  }
}
