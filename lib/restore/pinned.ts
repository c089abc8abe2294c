import { constants, type Stats } from 'node:fs';
import { lstat, mkdir, open, readdir, readlink, rmdir, unlink, type FileHandle } from 'node:fs/promises';
import { resolve } from 'node:path';
import { RestoreError } from '../errors.js';

/**
 * Directories held open, and every step below them taken from the open handle with no symlink
 * followed: the openat(2) discipline, in Node, which has no openat.
 *
 * `/proc/self/fd/N/name` is resolved by the kernel from the directory fd N refers to (a magic
 * link: no path is walked again), and only `name` is looked up in it. With O_NOFOLLOW on that
 * open, and lstat/unlink/rmdir (which never follow the last component), each step is exactly
 * openat(N, name, O_NOFOLLOW) / unlinkat(N, name): a tenant who swaps a directory for a symlink
 * between two steps makes a step fail (ELOOP, ENOTDIR), never lands it outside. A child process
 * (root, like us) reaches the same directory through /proc/<our pid>/fd/N.
 */
const DIR_NOFOLLOW = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
const S_ISVTX = 0o1000;

export class PinnedDir {
  constructor(
    private readonly handle: FileHandle,
    /** The path it was opened by, for messages only. */
    readonly path: string,
  ) {}
  get fd(): number {
    return this.handle.fd;
  }
  /** This directory as another (root) process can open it: never re-walked by name. */
  forChild(): string {
    return `/proc/${process.pid}/fd/${this.handle.fd}`;
  }
  close(): Promise<void> {
    return this.handle.close();
  }
}

/** `name` (one component, raw bytes) inside the directory fd refers to. */
export function at(fd: number, name: string | Buffer): Buffer {
  return Buffer.concat([Buffer.from(`/proc/self/fd/${fd}/`), typeof name === 'string' ? Buffer.from(name) : name]);
}

const codeOf = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | undefined)?.code;

/** Only root can change it: root's, and not writable by group/others (sticky: others cannot rename root's entries). */
function rootOnly(st: Stats): boolean {
  return st.uid === 0 && ((st.mode & 0o022) === 0 || (st.mode & S_ISVTX) !== 0);
}

/**
 * Open the directory `path` component by component from `/`. A symlink on the way is followed only
 * when root owns it and only root can write the directory holding it (a tenant can neither plant
 * nor swap it); any other symlink is refused. `create`: missing components are made (that mode).
 */
export async function pinDir(path: string, opts: { create?: number; what?: string } = {}): Promise<PinnedDir> {
  const what = opts.what ?? path;
  let rest = resolve(path).split('/').filter(Boolean);
  let dir = await open('/', DIR_NOFOLLOW);
  let hops = 0;
  try {
    while (rest.length) {
      const name = rest.shift()!;
      const p = at(dir.fd, name);
      let st = await lstat(p).catch((err: unknown) => (codeOf(err) === 'ENOENT' ? undefined : Promise.reject(err)));
      if (!st && opts.create !== undefined) {
        await mkdir(p, { mode: opts.create }).catch((err: unknown) => (codeOf(err) === 'EEXIST' ? undefined : Promise.reject(err)));
        st = await lstat(p);
      }
      if (!st) throw new RestoreError(`${what}: ${name} does not exist`, { path });
      if (st.isSymbolicLink()) {
        if (st.uid !== 0 || !rootOnly(await dir.stat())) {
          throw new RestoreError(`${what}: ${name} is a symlink someone other than root could have planted (uid ${st.uid}); refusing to follow it: give a path only root can write`, { path });
        }
        if (++hops > 40) throw new RestoreError(`${what}: too many symlinks`, { path });
        const target = await readlink(p);
        if (target.startsWith('/')) {
          await dir.close();
          dir = await open('/', DIR_NOFOLLOW);
        }
        rest = [...target.split('/').filter(Boolean), ...rest];
        continue;
      }
      if (!st.isDirectory()) throw new RestoreError(`${what}: ${name} is not a directory`, { path });
      const next = await open(p, DIR_NOFOLLOW).catch((err: unknown) => {
        // Swapped for a symlink (or a file) since the lstat just above: a race, not a path to use.
        if (codeOf(err) === 'ELOOP' || codeOf(err) === 'ENOTDIR') throw new RestoreError(`${what}: ${name} changed while it was opened (a symlink now); refusing it`, { path });
        throw err;
      });
      await dir.close();
      dir = next;
    }
    return new PinnedDir(dir, path);
  } catch (err) {
    await dir.close();
    throw err;
  }
}

/**
 * A new directory `name` (0700, ours) inside `parent`: never one that was there before. Whatever
 * sits at `name` when we open it must be root's, private and empty; otherwise someone swapped it.
 */
export async function makeFreshDir(parent: PinnedDir, name: string): Promise<PinnedDir> {
  const p = at(parent.fd, name);
  await mkdir(p, { mode: 0o700 }).catch((err: unknown) => {
    if (codeOf(err) === 'EEXIST') throw new RestoreError(`${parent.path}/${name} already exists: remove it or choose another --target (a restore copies into a new directory only)`, { path: `${parent.path}/${name}` });
    throw err;
  });
  const handle = await open(p, DIR_NOFOLLOW).catch((err: unknown) => {
    if (codeOf(err) === 'ELOOP' || codeOf(err) === 'ENOTDIR') throw new RestoreError(`${parent.path}/${name} was replaced while it was created; refusing it`, { path: `${parent.path}/${name}` });
    throw err;
  });
  const st = await handle.stat();
  if (st.uid !== 0 || (st.mode & 0o077) !== 0 || (await readdir(`/proc/self/fd/${handle.fd}`)).length) {
    await handle.close();
    throw new RestoreError(`${parent.path}/${name} was replaced while it was created (not root's private empty directory); refusing it`, { path: `${parent.path}/${name}` });
  }
  return new PinnedDir(handle, `${parent.path}/${name}`);
}

/**
 * Remove each entry `rels` names (raw bytes, relative to `root`; deepest first), subtrees
 * included, without following any symlink: a symlink is removed itself, a path whose directories
 * are no longer directories (swapped for a symlink while we work) is left alone and returned.
 */
export async function removeBelow(root: PinnedDir, rels: readonly Buffer[]): Promise<Buffer[]> {
  const left: Buffer[] = [];
  for (const rel of rels) {
    const parts = splitRel(rel);
    const opened: FileHandle[] = [];
    try {
      let fd = root.fd;
      let reachable = true;
      for (const comp of parts.slice(0, -1)) {
        const h = await open(at(fd, comp), DIR_NOFOLLOW).catch((err: unknown) => (['ELOOP', 'ENOTDIR', 'ENOENT'].includes(codeOf(err) ?? '') ? undefined : Promise.reject(err)));
        if (!h) {
          reachable = false;
          break;
        }
        opened.push(h);
        fd = h.fd;
      }
      if (!reachable || !(await removeEntry(fd, parts.at(-1)!))) left.push(rel);
    } catch (err) {
      // EBUSY (a mount point), EPERM (immutable), EIO…: a restore error naming the entry, not a crash.
      if (err instanceof RestoreError || !codeOf(err)) throw err;
      throw new RestoreError(`${root.path}/${rel.toString()}: cannot be removed (${(err as Error).message})`, { path: `${root.path}/${rel.toString()}` }, { cause: err });
    } finally {
      for (const h of opened.reverse()) await h.close();
    }
  }
  return left;
}

function splitRel(rel: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= rel.length; i++) {
    if (i === rel.length || rel[i] === 0x2f) {
      if (i > start) out.push(rel.subarray(start, i));
      start = i + 1;
    }
  }
  if (out.length === 0 || out.some((c) => (c.length === 1 && c[0] === 0x2e) || (c.length === 2 && c[0] === 0x2e && c[1] === 0x2e))) {
    throw new RestoreError(`not a path inside the site: ${JSON.stringify(rel.toString())}`);
  }
  return out;
}

/** unlinkat / a no-follow descent + rmdir; a few tries when the entry changes type under us. */
async function removeEntry(dirFd: number, name: Buffer): Promise<boolean> {
  const p = at(dirFd, name);
  for (let attempt = 0; attempt < 5; attempt++) {
    const st = await lstat(p).catch((err: unknown) => (codeOf(err) === 'ENOENT' ? undefined : Promise.reject(err)));
    if (!st) return true;
    if (!st.isDirectory()) {
      const r = await unlink(p).then(
        () => 'done',
        (err: unknown) => (codeOf(err) === 'ENOENT' ? 'done' : codeOf(err) === 'EISDIR' ? 'retry' : Promise.reject(err)),
      );
      if (r === 'done') return true;
      continue;
    }
    const h = await open(p, DIR_NOFOLLOW).catch((err: unknown) => (['ELOOP', 'ENOTDIR', 'ENOENT'].includes(codeOf(err) ?? '') ? undefined : Promise.reject(err)));
    if (!h) continue;
    try {
      for (const child of await readdir(`/proc/self/fd/${h.fd}`, { encoding: 'buffer' })) {
        if (!(await removeEntry(h.fd, child))) return false;
      }
    } finally {
      await h.close();
    }
    const r = await rmdir(p).then(
      () => 'done',
      (err: unknown) => (codeOf(err) === 'ENOENT' ? 'done' : ['ENOTEMPTY', 'EEXIST', 'ENOTDIR'].includes(codeOf(err) ?? '') ? 'retry' : Promise.reject(err)),
    );
    if (r === 'done') return true;
  }
  return false;
}
