import { constants } from 'node:fs';
import { lstat, open, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { cmd } from '../proc/command.js';
import { pipeToFile } from '../proc/pipeline.js';
import { RestoreError } from '../errors.js';
import { at } from './pinned.js';
import { sha256 } from './stage.js';

const DIR_NOFOLLOW = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

let dumped = 0;

/**
 * Step 3: compare a staged tree (what the backup holds) with the live one, entry by entry:
 * type, mode, owner, symlink target, device number (overlay whiteouts are char 0:0), content,
 * and every xattr (POSIX ACLs are system.posix_acl_* xattrs). Modification times are not
 * compared: the same bytes with another mtime are the same file.
 */
export interface TreeEntry {
  readonly type: 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly rdev: number;
  readonly link?: string;
  /** Inode and link count: files hard-linked together in the backup are put back linked. */
  readonly ino: number;
  readonly nlink: number;
}

export type Tree = Map<string, TreeEntry>;

/**
 * Relative paths are kept as "raw" strings: latin1, one character per byte of the name. File
 * names are bytes, not UTF-8 (a tenant can name a file "\xff"); a UTF-8 string would turn such a
 * name into U+FFFD and lose it. `raw()` gives the bytes back for the filesystem, `display()` a
 * readable (lossy) form for people, `fromUtf8()` a path typed as text into the raw form.
 */
export const raw = (rel: string): Buffer => Buffer.from(rel, 'latin1');
export const display = (rel: string): string => Buffer.from(rel, 'latin1').toString('utf8');
export const fromUtf8 = (text: string): string => Buffer.from(text, 'utf8').toString('latin1');

/** `dir` (a path as text) + `/` + `rel` (raw), as the bytes the kernel gets. */
export function under(dir: string, rel: string): Buffer {
  return rel ? Buffer.concat([Buffer.from(dir), Buffer.from('/'), raw(rel)]) : Buffer.from(dir);
}

/**
 * Every entry below `dir` (raw relative paths; the root itself is ''), no symlink followed: each
 * directory is opened O_NOFOLLOW and its entries looked up from that handle (pinned.ts), so a live
 * tree whose owner swaps a directory for a symlink mid-walk is never walked outside. An entry that
 * changes type between two looks (lstat said symlink, readlink finds a directory) is looked at
 * again; one that keeps changing is an error that says so (a site being changed while it is
 * compared), not an internal one.
 */
export async function walkTree(dir: string, skip: (rel: string) => boolean = () => false): Promise<Tree> {
  const out: Tree = new Map();
  const visit = async (path: Buffer, rel: string): Promise<void> => {
    for (let attempt = 0; attempt < 10; attempt++) {
      const st = await lstat(path).catch(() => undefined);
      if (!st) return;
      const type = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isCharacterDevice() ? 'char' : st.isBlockDevice() ? 'block' : st.isFIFO() ? 'fifo' : 'socket';
      let link: string | undefined;
      if (type === 'symlink') {
        link = await readlink(path, { encoding: 'buffer' }).then((b) => b.toString('latin1'), () => undefined);
        if (link === undefined) continue;
      }
      if (type !== 'dir') {
        out.set(rel, { type, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: st.size, rdev: st.rdev, link, ino: st.ino, nlink: st.nlink });
        return;
      }
      const handle = await open(path, DIR_NOFOLLOW).catch(() => undefined);
      if (!handle) continue;
      try {
        out.set(rel, { type, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: st.size, rdev: st.rdev, ino: st.ino, nlink: st.nlink });
        for (const name of (await readdir(`/proc/self/fd/${handle.fd}`, { encoding: 'buffer' })).sort(Buffer.compare)) {
          const child = rel ? `${rel}/${name.toString('latin1')}` : name.toString('latin1');
          if (!skip(child)) await visit(at(handle.fd, name), child);
        }
      } finally {
        await handle.close();
      }
      return;
    }
    throw new RestoreError(`${dir}: ${JSON.stringify(display(rel))} kept changing while it was compared (is someone changing the site right now?); nothing was restored`, { dir, rel: display(rel) });
  };
  await visit(Buffer.from(dir), '');
  return out;
}

/**
 * The files hard-linked (in the backup) to one of `back` that `back` lacks: rsync -H links only
 * files it is given, so a missing link of an unchanged file would come back as a copy.
 */
export function linkPartners(backup: Tree, back: ReadonlySet<string>): string[] {
  const groups = new Map<number, string[]>();
  for (const [rel, e] of backup) if (e.type === 'file' && e.nlink > 1) groups.set(e.ino, [...(groups.get(e.ino) ?? []), rel]);
  return [...groups.values()].filter((rels) => rels.some((r) => back.has(r))).flatMap((rels) => rels.filter((r) => !back.has(r)));
}

export function isWhiteout(e: TreeEntry | undefined): boolean {
  return e?.type === 'char' && e.rdev === 0;
}

/**
 * `getfattr -R` once per tree: every attribute of every entry, hex-encoded, keyed by raw relative
 * path. Its output goes to a file in `scratch` and is read as bytes: getfattr escapes only control
 * characters, so a name that is not UTF-8 arrives as its own bytes, which a text capture would lose.
 */
export async function readXattrs(dir: string, ignore: (name: string) => boolean, scratch: string): Promise<Map<string, string>> {
  const rawDir = fromUtf8(dir);
  const file = join(scratch, `xattrs-${++dumped}`);
  await pipeToFile([cmd('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', '--', dir])], file, { tolerate: (st) => st.exitCode === 1, fsync: false });
  const text = (await readFile(file)).toString('latin1');
  await rm(file, { force: true });
  const out = new Map<string, string>();
  let path: string | undefined;
  let attrs: string[] = [];
  const flush = (): void => {
    if (path !== undefined) out.set(path, attrs.sort().join('\n'));
  };
  for (const line of text.split('\n')) {
    if (line.startsWith('# file: ')) {
      flush();
      const abs = unescapeOctal(line.slice(8));
      path = abs === rawDir ? '' : abs.slice(rawDir.length + 1);
      attrs = [];
    } else if (path !== undefined && line.includes('=')) {
      const name = line.slice(0, line.indexOf('='));
      if (!ignore(name)) attrs.push(line);
    }
  }
  flush();
  return out;
}

/** getfattr writes control characters as \ooo, a backslash as \\ and other bytes as they are: back to raw (latin1). */
function unescapeOctal(text: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '\\' && /^[0-7]{3}$/.test(text.slice(i + 1, i + 4))) {
      bytes.push(parseInt(text.slice(i + 1, i + 4), 8));
      i += 3;
    } else if (text[i] === '\\' && text[i + 1] === '\\') {
      bytes.push(0x5c);
      i++;
    } else bytes.push(text.charCodeAt(i));
  }
  return Buffer.from(bytes).toString('latin1');
}

export interface TreeDiff {
  /** In the backup, not live: put back. */
  readonly missing: string[];
  /** In both, different: put back. */
  readonly changed: string[];
  /** Live only (what --exact removes), parents before children. */
  readonly extra: string[];
}

/**
 * `backup` vs `live` (both relative to their own roots). With `viaOverlay`, `live` is the merged
 * view: a whiteout in the backup means "absent", and `extra` is computed from `liveUpper` (the
 * site's own layer) so that files of the template below are never taken for the site's own.
 */
export async function diffTrees(opts: {
  backupDir: string;
  backup: Tree;
  backupXattrs: Map<string, string>;
  liveDir: string;
  live: Tree;
  liveXattrs: Map<string, string>;
  viaOverlay: boolean;
  liveUpper?: Tree;
  /** Compare the root entry too (`restore files` of one file or directory). */
  includeRoot?: boolean;
}): Promise<TreeDiff & { whiteouts: string[] }> {
  const missing: string[] = [];
  const changed: string[] = [];
  const whiteouts: string[] = [];
  for (const [rel, b] of opts.backup) {
    if (rel === '' && !opts.includeRoot) continue;
    const l = opts.live.get(rel);
    if (opts.viaOverlay && isWhiteout(b)) {
      // Deleted in the site at backup time: it must not show in the merged view.
      if (l) whiteouts.push(rel);
      continue;
    }
    if (!l) missing.push(rel);
    else if (await differs(opts, rel, b, l)) changed.push(rel);
  }
  const extra: string[] = [];
  const candidates = opts.viaOverlay ? opts.liveUpper! : opts.live;
  for (const [rel, e] of candidates) {
    if (rel === '' || opts.backup.has(rel)) continue;
    if (opts.viaOverlay && isWhiteout(e)) continue;
    // Only the top of a removed subtree is listed: removing it removes the rest.
    const parent = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '';
    if (parent !== '' && !opts.backup.has(parent)) continue;
    extra.push(rel);
  }
  return { missing, changed, extra, whiteouts };
}

async function differs(opts: { backupDir: string; liveDir: string; backupXattrs: Map<string, string>; liveXattrs: Map<string, string> }, rel: string, b: TreeEntry, l: TreeEntry): Promise<boolean> {
  if (b.type !== l.type || b.mode !== l.mode || b.uid !== l.uid || b.gid !== l.gid) return true;
  if (b.type === 'symlink') return b.link !== l.link;
  if (b.type === 'char' || b.type === 'block') return b.rdev !== l.rdev;
  if ((opts.backupXattrs.get(rel) ?? '') !== (opts.liveXattrs.get(rel) ?? '')) return true;
  if (b.type === 'file') return b.size !== l.size || (await sha256(under(opts.backupDir, rel))) !== (await sha256(under(opts.liveDir, rel)));
  return false;
}
