import { lstatSync, mkdtempSync, type Stats } from 'node:fs';
import { tmpdir } from 'node:os';
import { mkdir, mkdtemp } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { BackupError } from './errors.js';
import { ExitCode } from './exit-codes.js';

/**
 * Private working directories (restore staging, temp files, secrets): a fresh mkdtemp directory
 * (0700, a random name nobody can guess or create first) under a parent only we can write.
 *
 * Why the parent matters: a directory under a parent another user can write is theirs to plant,
 * rename or swap. A local user who creates the staging directory before us would read every
 * restore staged there and could swap the staged tree for its own (a planted index.php restored
 * into another site, a planted dump "checked" against its planted manifest). So the parent is
 * created 0700 when missing, and an existing one is refused unless it and every directory above
 * it belong to us (root) and nobody else can write them. A sticky world-writable directory such
 * as /tmp may be an ancestor: others cannot rename or remove what is ours in it, so the chain
 * below it stays ours.
 */
export class UnsafeDirectoryError extends BackupError {
  constructor(message: string, dir: string, exitCode: ExitCode = ExitCode.USAGE) {
    super(message, exitCode, { dir });
  }
}

const S_ISVTX = 0o1000;
const GROUP_OTHER_WRITE = 0o022;

function owner(): number {
  return process.geteuid?.() ?? 0;
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Why `path` (an existing directory) is not ours alone, or undefined when it is. */
function unsafeBecause(path: string, st: Stats, asAncestor: boolean): string | undefined {
  const me = owner();
  if (st.isSymbolicLink()) return `${path} is a symlink (give the real path)`;
  if (!st.isDirectory()) return `${path} is not a directory`;
  if (st.uid !== me) return `${path} belongs to uid ${st.uid}, not ${me === 0 ? 'root' : `uid ${me}`}`;
  const writable = (st.mode & GROUP_OTHER_WRITE) !== 0;
  if (writable && !(asAncestor && st.mode & S_ISVTX)) return `${path} is writable by its group or by others (mode ${(st.mode & 0o7777).toString(8)})`;
  return undefined;
}

/**
 * Refuse `dir` unless it and every directory above it belong to us and nobody else can write them
 * (sticky ancestors excepted, see above). A missing part is fine: the caller creates it (0700).
 */
export function checkPrivateParent(dir: string, exitCode: ExitCode = ExitCode.USAGE, what = 'a private working directory', stickyOk = false): void {
  const abs = resolve(dir);
  const chain: string[] = [];
  for (let p = abs; ; p = dirname(p)) {
    chain.unshift(p);
    if (p === '/') break;
  }
  for (const p of chain) {
    const st = lstatOrUndefined(p);
    if (!st) return; // the rest is created by us (0700)
    const why = unsafeBecause(p, st, stickyOk || p !== abs);
    if (why) throw new UnsafeDirectoryError(`refusing ${abs} as ${what}: ${why}; only root may own and write it and the directories above it (remove it, or point the setting elsewhere)`, abs, exitCode);
  }
}

/** Create `dir` (0700, with missing parents) or accept an existing one that passes checkPrivateParent. */
export async function ensurePrivateParent(dir: string, exitCode: ExitCode = ExitCode.USAGE): Promise<string> {
  const abs = resolve(dir);
  checkPrivateParent(abs, exitCode);
  await mkdir(abs, { recursive: true, mode: 0o700 });
  // Created by us just now, or checked above: check again, a path that appeared meanwhile is not ours.
  checkPrivateParent(abs, exitCode);
  return abs;
}

/** A fresh private directory (0700, random name) under `parent` (checked or created first). The caller removes it. */
export async function makePrivateDir(parent: string, prefix: string, exitCode: ExitCode = ExitCode.USAGE): Promise<string> {
  const abs = await ensurePrivateParent(parent, exitCode);
  return mkdtemp(join(abs, prefix));
}

/**
 * A fresh temp directory (0700, random name) in `parent` (default the temp dir), for scratch files
 * and secrets. `parent` may be a sticky world-writable directory (/tmp, /dev/shm): mkdtemp makes a
 * name nobody can have made first, and the sticky bit keeps others from renaming or removing it.
 * A parent (or a directory above it) that another user owns, or that others can write without
 * the sticky bit, is refused: its owner could swap what we make there.
 */
export async function makeTempDir(prefix: string, parent: string = tmpdir()): Promise<string> {
  checkPrivateParent(parent, ExitCode.USAGE, 'a temporary directory', true);
  return mkdtemp(join(parent, prefix));
}

/** makeTempDir, synchronous. */
export function makeTempDirSync(prefix: string, parent: string = tmpdir()): string {
  checkPrivateParent(parent, ExitCode.USAGE, 'a temporary directory', true);
  return mkdtempSync(join(parent, prefix));
}
