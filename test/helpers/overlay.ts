import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { cmd } from '../../lib/proc/command.js';
import { track } from '../../lib/proc/process-group.js';
import { run } from '../../lib/proc/run.js';
import { exitClasses } from '../../lib/proc/exit-status.js';

/**
 * A site's `fst` mounted as a real overlay (lower: the template, upper: shadow), as on a live
 * panel, inside a private mount namespace: nothing outside the test sees the mount, and it goes
 * away with the namespace. `argv(…)` runs a program inside it (nsenter).
 */
export interface SiteOverlay {
  readonly pid: number;
  /** nsenter's argv for `file args…` inside the namespace. */
  argv(file: string, args: readonly string[]): string[];
  stop(): Promise<void>;
}

export async function mountSiteOverlay(home: string, site: string, lower: string): Promise<SiteOverlay> {
  const holder = spawn('unshare', ['-m', '--propagation', 'private', 'sleep', '3600'], { stdio: 'ignore', detached: true });
  track(holder);
  const pid = holder.pid!;
  const argv = (file: string, args: readonly string[]): string[] => ['-t', String(pid), '-m', '--', file, ...args];
  const work = join(home, site, '.overlay-work');
  mkdirSync(work, { recursive: true });
  // unshare needs a moment to enter its namespace before nsenter can join it.
  for (let i = 0; ; i++) {
    const own = await run(cmd('readlink', [`/proc/${pid}/ns/mnt`]), { exitClass: exitClasses({ ok: [1] }) });
    const mine = await run(cmd('readlink', ['/proc/self/ns/mnt']));
    if (own.stdout && own.stdout !== mine.stdout) break;
    if (i > 100) throw new Error('unshare did not enter a new mount namespace');
    await new Promise((r) => setTimeout(r, 20));
  }
  const fst = join(home, site, 'fst');
  await run(cmd('nsenter', argv('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${join(home, site, 'shadow')},workdir=${work}`, fst])));
  return {
    pid,
    argv,
    stop: async () => {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      await new Promise((r) => setTimeout(r, 100));
    },
  };
}
