import type { ChildProcess } from 'node:child_process';

/**
 * Every child we start leads its own process group (spawned detached), so a timeout or a
 * cancelled Bacula job can kill the whole tree it started (backup_dbs.php forks, duplicity runs
 * gpg). The registry lets a signal handler reach every live child.
 */
const live = new Set<ChildProcess>();
/** Process groups led by children that are not ours but a spawner worker's (lib/run/spawner.ts). */
const groups = new Set<number>();

export function trackGroup(pgid: number): void {
  groups.add(pgid);
}

export function forgetGroup(pgid: number): void {
  groups.delete(pgid);
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    /* already gone */
  }
}

export function track(child: ChildProcess): void {
  if (child.pid === undefined) return;
  live.add(child);
  const forget = (): void => void live.delete(child);
  child.once('exit', forget);
  child.once('error', forget);
}

export function killTree(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      /* already gone */
    }
  }
}

/** TERM, then KILL after the grace period for whatever is still there. */
export function terminate(child: ChildProcess, graceMs = 5000): void {
  killTree(child, 'SIGTERM');
  const timer = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) killTree(child, 'SIGKILL');
  }, graceMs);
  timer.unref();
  child.once('exit', () => clearTimeout(timer));
}

export function terminateAll(graceMs = 5000): number {
  const n = live.size + groups.size;
  for (const child of live) terminate(child, graceMs);
  for (const pgid of groups) signalGroup(pgid, 'SIGTERM');
  if (groups.size) {
    const timer = setTimeout(() => groups.forEach((pgid) => signalGroup(pgid, 'SIGKILL')), graceMs);
    timer.unref();
  }
  return n;
}

/** SIGKILL to every tracked child's process group, now (a last-resort exit). */
export function killAll(): void {
  for (const child of live) killTree(child, 'SIGKILL');
  for (const pgid of groups) signalGroup(pgid, 'SIGKILL');
}

/** The process groups our children lead now (each leads its own): a run records them so that the one taking over after a SIGKILL can end them. */
export function liveGroups(): number[] {
  return [...[...live].map((c) => c.pid!), ...groups];
}

export function liveChildren(): number {
  return live.size + groups.size;
}

/** Resolve once every tracked child has exited (or the deadline passes). */
export async function waitForChildren(deadlineMs = 10000): Promise<void> {
  const start = Date.now();
  while (live.size + groups.size > 0 && Date.now() - start < deadlineMs) {
    await new Promise((r) => setTimeout(r, 50));
  }
}
