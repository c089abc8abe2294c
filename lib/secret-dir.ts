import { readdirSync, rmSync, statfsSync } from 'node:fs';
import { atLastResort } from './last-resort.js';
import { makeTempDir } from './private-dir.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** statfs(2) f_type of tmpfs (linux/magic.h). */
const TMPFS_MAGIC = 0x01021994;

function onTmpfs(dir: string): boolean {
  try {
    return statfsSync(dir).type === TMPFS_MAGIC;
  } catch {
    return false;
  }
}

/**
 * Where a file holding a secret (the MySQL option file with the password) goes: memory, never a
 * disk. The temp dir when it is a tmpfs, else /dev/shm (a tmpfs on every systemd Linux), else the
 * temp dir (a 0600 file in a 0700 directory, removed when the session closes).
 *
 * Why not a file descriptor (`--defaults-extra-file=/dev/fd/N`, as borgmatic does with a pipe)?
 * mariadb-dump reads an option file from a pipe or a FIFO (checked), but Node's stdio "pipes" are
 * socketpairs, which /dev/fd/N cannot open (ENXIO, checked), and Node has no pipe(2) or mkfifo:
 * a FIFO per command would cost a process per command (1,000 tiny databases pay for every spawn).
 */
export function secretDirParent(temp: string = tmpdir(), shm = '/dev/shm'): string {
  if (onTmpfs(temp)) return temp;
  if (onTmpfs(shm)) return shm;
  return temp;
}

/**
 * A fresh 0700 directory for secrets (see secretDirParent); the caller removes it. A process that
 * must exit before the caller can (a second signal) removes it on its way out.
 */
export async function makeSecretDir(prefix: string): Promise<string> {
  // The pid in the name lets the run that takes over from a killed one find its directories.
  const dir = await makeTempDir(`${prefix}${process.pid}-`, secretDirParent());
  atLastResort(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Remove the secret directories a dead process left (SIGKILL leaves no chance to clean up): those
 * named `<prefix><pid>-…` by makeSecretDir. Returns how many were removed.
 */
export function removeSecretDirsOf(pid: number, prefix = 'asb-', parent: string = secretDirParent()): number {
  let names: string[];
  try {
    names = readdirSync(parent);
  } catch {
    return 0;
  }
  const mine = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}[a-z0-9]+-${pid}-[^/]+$`);
  let removed = 0;
  for (const name of names) {
    if (!mine.test(name)) continue;
    rmSync(join(parent, name), { recursive: true, force: true });
    removed++;
  }
  return removed;
}
