import { lstatSync, readdirSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MissingDependencyError } from '../errors.js';
import { cmd } from '../proc/command.js';
import { run } from '../proc/run.js';
import { whichSystem } from '../proc/which.js';
import { exitClasses } from '../proc/exit-status.js';
import { runConfined, type Jail } from './confine.js';
import { removeBelow, type PinnedDir } from './pinned.js';
import { display, fromUtf8, raw, under } from './tree.js';

/**
 * Step 4 for files: put entries back and take extra ones away. rsync copies exactly the listed
 * entries (no recursion: a changed directory gets its attributes, not its whole subtree) with
 * owners as numbers, modes, times, ACLs, xattrs, hard links and device files (whiteouts).
 * Relative paths are raw (tree.ts): the list goes to rsync as bytes.
 *
 * Into a live site (tenant-writable) rsync runs in the jail (confine.ts): a tenant's symlink can
 * lead it nowhere outside the site. rsync's own options cannot promise that: --safe-links would
 * drop the site's own absolute symlinks from the restore, --no-implied-dirs makes rsync keep (and
 * write through) a symlink where the backup has a directory, and older rsync (RHEL 8's 3.1) has no
 * check of its own. Into a --target copy, `toDir` is a fresh root-only directory we hold open.
 */
export async function copyEntries(fromDir: string, toDir: string, rels: readonly string[], opts: { viaOverlay: boolean; scratch: string; signal?: AbortSignal; jail?: Jail }): Promise<void> {
  if (rels.length === 0) return;
  const rsync = whichSystem('rsync');
  if (!rsync) throw new MissingDependencyError('rsync', 'rsync', 'rsync');
  const list = join(opts.scratch, `files-${++lists}`);
  await writeFile(list, Buffer.concat(rels.flatMap((r) => [raw(r), Buffer.from([0])])), { mode: 0o600 });
  const args = ['-lptgoD', '-A', '-X', '-H', '--numeric-ids', '--from0', `--files-from=${list}`];
  // The overlay does not let anyone write its own trusted.overlay.* markers through the mount.
  if (opts.viaOverlay) args.push('--filter=-x trusted.overlay.*');
  const command = cmd(rsync, [...args, '--', fromDir + '/', toDir + '/']);
  const options = { signal: opts.signal, timeoutMs: 24 * 3600_000 };
  if (opts.jail) await runConfined(opts.jail, command, options);
  else await run(command, options);
}

let lists = 0;

/**
 * Deepest first, each without following a symlink (pinned.ts); through the overlay a removal
 * becomes a whiteout where the template has the file. Returns what was left alone (display form):
 * entries whose directories were swapped for something else while we worked.
 */
export async function removeEntries(root: PinnedDir, rels: readonly string[]): Promise<string[]> {
  const deepestFirst = [...rels].sort((a, b) => b.length - a.length);
  return (await removeBelow(root, deepestFirst.map(raw))).map((b) => display(b.toString('latin1')));
}

/**
 * SELinux file contexts, where SELinux is enabled and restorecon is installed; in the jail, since
 * restorecon relabels whatever a path leads to. A name holding a newline cannot go through
 * restorecon's line list: its directory is relabelled instead (-R would reach too far).
 */
export async function restoreContexts(jail: Jail, rels: readonly string[], scratch: string): Promise<boolean> {
  const enabled = whichSystem('selinuxenabled');
  const restorecon = whichSystem('restorecon');
  if (!enabled || !restorecon || rels.length === 0) return false;
  if ((await run(cmd(enabled), { exitClass: exitClasses({ ok: [1] }) })).exitCode !== 0) return false;
  const lines = new Set<string>();
  for (const r of rels) {
    const usable = r.includes('\n') ? r.slice(0, r.indexOf('\n')).replace(/\/[^/]*$/, '') : r;
    lines.add(usable === '' ? fromUtf8(jail.at) : `${fromUtf8(jail.at)}/${usable}`);
  }
  const list = join(scratch, `contexts-${++lists}`);
  await writeFile(list, Buffer.concat([...lines].flatMap((l) => [raw(l), Buffer.from('\n')])), { mode: 0o600 });
  await runConfined(jail, cmd(restorecon, ['-F', '-f', list]));
  return true;
}

/**
 * Run `fn` (the duplicity ACL sidecar applied to a staged tree, by path) with every symlink of the
 * staged `roots` moved aside, then put back. The sidecar and the files are two walks of a live
 * site at two moments: a tenant who had `x/etc/passwd` (a file with an ACL for itself) during one
 * and `x` as a symlink to / during the other gets a sidecar entry `x/etc/passwd` and a staged
 * symlink `x`; acl-restore.ts checks only the entry's own directory (`x/etc`, a directory through
 * the symlink), so root's setfacl would follow it to /etc/passwd. With the symlinks parked such a
 * path leads nowhere (counted as missing); symlinks carry no ACLs of their own. Staging is
 * private: nobody else can change it meanwhile.
 */
export async function withSymlinksParked<T>(roots: readonly string[], parking: string, fn: () => Promise<T>): Promise<T> {
  const parked: [Buffer, string][] = [];
  await mkdir(parking, { mode: 0o700 });
  try {
    for (const root of roots) {
      for (const rel of symlinksBelow(root)) {
        const aside = join(parking, String(parked.length));
        await rename(under(root, rel), aside);
        parked.push([under(root, rel), aside]);
      }
    }
    return await fn();
  } finally {
    for (const [home, aside] of parked.reverse()) await rename(aside, home);
  }
}

/**
 * The symlinks at or below `root` (raw relative paths; '' for the root itself), none followed.
 * Staging only: it is private, nothing changes under it, so a plain synchronous walk (a listing
 * per directory, an lstat per entry) serves, where walkTree's guarded steps (an open and several
 * awaits per entry, each a trip through the thread pool) took seconds for a site of thousands of
 * files on a busy machine.
 */
function symlinksBelow(root: string): string[] {
  const out: string[] = [];
  const visit = (path: Buffer, rel: string): void => {
    const st = lstatSync(path, { throwIfNoEntry: false });
    if (st?.isSymbolicLink()) out.push(rel);
    if (!st?.isDirectory()) return;
    for (const name of readdirSync(path, 'buffer')) visit(Buffer.concat([path, Buffer.from('/'), name]), rel ? `${rel}/${name.toString('latin1')}` : name.toString('latin1'));
  };
  visit(Buffer.from(root), '');
  return out;
}
