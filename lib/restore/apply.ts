import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MissingDependencyError } from '../errors.js';
import { cmd } from '../run/command.js';
import { run } from '../run/run.js';
import { whichSystem } from '../run/which.js';
import { exitClasses } from '../run/exit-status.js';

/**
 * Step 4 for files: put entries back and take extra ones away. rsync copies exactly the listed
 * entries (no recursion: a changed directory gets its attributes, not its whole subtree) with
 * owners as numbers, modes, times, ACLs, xattrs, hard links and device files (whiteouts).
 */
export async function copyEntries(fromDir: string, toDir: string, rels: readonly string[], opts: { viaOverlay: boolean; scratch: string; signal?: AbortSignal }): Promise<void> {
  if (rels.length === 0) return;
  const rsync = whichSystem('rsync');
  if (!rsync) throw new MissingDependencyError('rsync', 'rsync', 'rsync');
  const list = join(opts.scratch, `files-${Date.now()}`);
  await writeFile(list, rels.map((r) => r + '\0').join(''), { mode: 0o600 });
  const args = ['-lptgoD', '-A', '-X', '-H', '--numeric-ids', '--from0', `--files-from=${list}`];
  // The overlay does not let anyone write its own trusted.overlay.* markers through the mount.
  if (opts.viaOverlay) args.push('--filter=-x trusted.overlay.*');
  await run(cmd(rsync, [...args, '--', fromDir + '/', toDir + '/']), { signal: opts.signal, timeoutMs: 24 * 3600_000 });
}

/** Deepest first; through the overlay a removal becomes a whiteout where the template has the file. */
export async function removeEntries(root: string, rels: readonly string[]): Promise<void> {
  for (const rel of [...rels].sort((a, b) => b.length - a.length)) await rm(join(root, rel), { recursive: true, force: true });
}

/** SELinux file contexts, where SELinux is enabled and restorecon is installed. */
export async function restoreContexts(paths: readonly string[], scratch: string): Promise<boolean> {
  const enabled = whichSystem('selinuxenabled');
  const restorecon = whichSystem('restorecon');
  if (!enabled || !restorecon || paths.length === 0) return false;
  if ((await run(cmd(enabled), { exitClass: exitClasses({ ok: [1] }) })).exitCode !== 0) return false;
  const list = join(scratch, `contexts-${Date.now()}`);
  await writeFile(list, paths.join('\n') + '\n', { mode: 0o600 });
  await run(cmd(restorecon, ['-F', '-f', list]));
  return true;
}
