import type { ManifestEntry } from '../model/manifest.js';
import { copyEntries } from './apply.js';
import { lstatSync, readdirSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { at, makeFreshDir, pinDir, type PinnedDir } from './pinned.js';
import type { StagedRun } from './stage.js';
import { fromUtf8, under, walkTree } from './tree.js';

/**
 * `restore site|files … --target DIR`: the staged files (and dumps) copied into DIR/siteN.
 * DIR is opened from / without following a symlink anyone but root could have planted (pinned.ts;
 * missing parts made 0700), and DIR/siteN is made new (0700, root's) and held open: rsync writes
 * through our handle, never through the path, and nobody else can enter it while it fills. So
 * DIR may lie in a tenant's tree: the tenant can rename siteN, not enter or redirect it.
 */
export interface TargetCopy {
  readonly target: string;
  readonly site: string;
  /** The site's directory (/home/virtual/siteN) and the paths under it to copy, as staged. */
  readonly home: string;
  readonly wanted: readonly string[];
  readonly run?: StagedRun;
  readonly dumps: readonly ManifestEntry[];
  /** This restore's staging directory. */
  readonly staging: string;
  readonly signal?: AbortSignal;
}

export async function copyToTarget(c: TargetCopy): Promise<void> {
  const parent = await pinDir(c.target, { create: 0o700, what: `--target ${c.target}` });
  let into: PinnedDir;
  try {
    into = await makeFreshDir(parent, c.site);
  } finally {
    await parent.close();
  }
  try {
    if (c.wanted.length) {
      // Each wanted path with the directories above it (rsync's implied directories): a file comes back as a file.
      const rels: string[] = [];
      for (const w of c.wanted) {
        const top = fromUtf8(w.slice(c.home.length + 1));
        if (!top.includes('/') && (await moveInto(c.staging + w, into, Buffer.from(top, 'latin1')))) continue;
        for (const r of (await walkTree(c.staging + w)).keys()) rels.push(r ? `${top}/${r}` : top);
      }
      if (rels.length) await copyEntries(c.staging + c.home, into.forChild(), rels, { viaOverlay: false, scratch: c.staging, signal: c.signal });
    }
    if (c.run && c.dumps.length) {
      const only = [...c.dumps.map((e) => e.path!), 'manifest.json'];
      const kept = (r: string): boolean => r === '' || only.some((o) => o === r || o.startsWith(r + '/'));
      const all = [...(await walkTree(c.run.dir)).keys()];
      // A run fetched into staging is this restore's own: what DIR does not get is removed and the
      // run moved, like shadow and info (a site's dumps can be most of its bytes). A local run stays.
      if (c.run.dir.startsWith(c.staging + '/')) {
        const parentKept = (r: string): boolean => kept(r.includes('/') ? r.slice(0, r.lastIndexOf('/')) : '');
        for (const r of all.filter((x) => !kept(x) && parentKept(x))) await rm(under(c.run.dir, r), { recursive: true, force: true });
        if (await moveInto(c.run.dir, into, Buffer.from('dumps'))) return;
      }
      // '.' is the run directory itself: its owner, mode, ACLs and xattrs too.
      const rels = all.filter(kept).map((r) => r || '.');
      const dumps = await makeFreshDir(into, 'dumps');
      try {
        await copyEntries(c.run.dir, dumps.forChild(), rels, { viaOverlay: false, scratch: c.staging, signal: c.signal });
      } finally {
        await dumps.close();
      }
    }
  } finally {
    await into.close();
  }
}

/**
 * A whole part of the site (shadow, info) is moved from staging, not copied: staging is this
 * restore's own 0700 directory, `into` the fresh one held open, and a rename keeps every owner,
 * mode, ACL, xattr, hard link and time as staged, in one step instead of a second copy of the site.
 * false on another filesystem (EXDEV): the caller copies.
 */
async function moveInto(staged: string, into: PinnedDir, name: Buffer): Promise<boolean> {
  try {
    await rename(staged, at(into.fd, name));
    return true;
  } catch (err) {
    if ((err as { code?: unknown }).code === 'EXDEV') return false;
    throw err;
  }
}

/**
 * What --target receives: the entries below (and including) each staged path, and the bytes of
 * their files. Staging is this restore's own 0700 directory, written by the engine alone, so
 * this walk needs none of walkTree's guards against a tenant swapping directories mid-walk; and
 * it runs with nothing else to wait for, so each lstat and readdir is a direct system call
 * (readdir's file types; lstat for files' sizes) instead of a round trip through libuv's
 * threads, one entry after another, thousands of times. Names as bytes (any name, UTF-8 or not);
 * no symlink followed.
 */
export function countStaged(paths: readonly string[]): { entries: number; bytes: number } {
  let entries = 0;
  let bytes = 0;
  const dir = (path: Buffer): void => {
    for (const d of readdirSync(path, { withFileTypes: true, encoding: 'buffer' })) {
      const child = Buffer.concat([path, SLASH, d.name]);
      entries++;
      if (d.isFile()) bytes += lstatSync(child).size;
      else if (d.isDirectory()) dir(child);
    }
  };
  for (const p of paths) {
    const st = lstatSync(p, { throwIfNoEntry: false });
    if (!st) continue;
    entries++;
    if (st.isFile()) bytes += st.size;
    else if (st.isDirectory()) dir(Buffer.from(p));
  }
  return { entries, bytes };
}

const SLASH = Buffer.from('/');
