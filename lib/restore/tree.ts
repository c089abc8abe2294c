import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { cmd } from '../run/command.js';
import { run } from '../run/run.js';
import { sha256 } from './stage.js';
import { exitClasses } from '../run/exit-status.js';

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
}

export type Tree = Map<string, TreeEntry>;

/** Every entry below `dir` (relative paths; the root itself is ''), no symlink followed. */
export async function walkTree(dir: string, skip: (rel: string) => boolean = () => false): Promise<Tree> {
  const out: Tree = new Map();
  const visit = async (rel: string): Promise<void> => {
    const abs = rel ? join(dir, rel) : dir;
    const st = await lstat(abs).catch(() => undefined);
    if (!st) return;
    const type = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isCharacterDevice() ? 'char' : st.isBlockDevice() ? 'block' : st.isFIFO() ? 'fifo' : 'socket';
    out.set(rel, { type, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: st.size, rdev: st.rdev, link: type === 'symlink' ? await readlink(abs) : undefined });
    if (type !== 'dir') return;
    for (const name of (await readdir(abs)).sort()) {
      const child = rel ? `${rel}/${name}` : name;
      if (!skip(child)) await visit(child);
    }
  };
  await visit('');
  return out;
}

export function isWhiteout(e: TreeEntry | undefined): boolean {
  return e?.type === 'char' && e.rdev === 0;
}

/** `getfattr -R` once per tree: every attribute of every entry, hex-encoded, keyed by relative path. */
export async function readXattrs(dir: string, ignore: (name: string) => boolean): Promise<Map<string, string>> {
  const r = await run(cmd('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', '--', dir]), { exitClass: exitClasses({ ok: [1] }) });
  const out = new Map<string, string>();
  let path: string | undefined;
  let attrs: string[] = [];
  const flush = (): void => {
    if (path !== undefined) out.set(path, attrs.sort().join('\n'));
  };
  for (const line of r.stdout.split('\n')) {
    if (line.startsWith('# file: ')) {
      flush();
      const abs = unescapeOctal(line.slice(8));
      path = abs === dir ? '' : abs.slice(dir.length + 1);
      attrs = [];
    } else if (path !== undefined && line.includes('=')) {
      const name = line.slice(0, line.indexOf('='));
      if (!ignore(name)) attrs.push(line);
    }
  }
  flush();
  return out;
}

/** getfattr writes bytes outside printable ASCII as \ooo and a backslash as \\. */
function unescapeOctal(text: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '\\' && /^[0-7]{3}$/.test(text.slice(i + 1, i + 4))) {
      bytes.push(parseInt(text.slice(i + 1, i + 4), 8));
      i += 3;
    } else if (text[i] === '\\' && text[i + 1] === '\\') {
      bytes.push(0x5c);
      i++;
    } else bytes.push(...Buffer.from(text[i]!, 'utf8'));
  }
  return Buffer.from(bytes).toString('utf8');
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
  if (b.type === 'file') return b.size !== l.size || (await sha256(join(opts.backupDir, rel))) !== (await sha256(join(opts.liveDir, rel)));
  return false;
}
