import type { ChildProcess } from 'node:child_process';

/**
 * Every child we start leads its own process group (spawned detached), so a timeout or a
 * cancelled Bacula job can kill the whole tree it started (backup_dbs.php forks, duplicity runs
 * gpg). The registry lets a signal handler reach every live child.
 *
 * execa's own timeout, cancelSignal and forceKillAfterDelay signal the child's pid only, never its
 * group (sindresorhus/execa#96, open): a timed-out backup_dbs.php would leave its forks running.
 * So every primitive ends a process through terminate() below, the one TERM-then-KILL.
 */
const live = new Set<ChildProcess>();
/** Process groups led by children that are not ours but a spawner worker's (lib/proc/spawner.ts). */
const groups = new Set<number>();

export function trackGroup(pgid: number): void {
  groups.add(pgid);
}

export function forgetGroup(pgid: number): void {
  groups.delete(pgid);
}

export function track(child: ChildProcess): void {
  if (child.pid === undefined) return;
  live.add(child);
  const forget = (): void => void live.delete(child);
  child.once('exit', forget);
  child.once('error', forget);
}

function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false; // already gone
  }
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** One signal to the child's whole process group (to the child alone if it leads none). */
export function killTree(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): void {
  if (child.pid === undefined) return;
  if (signalGroup(child.pid, signal)) return;
  try {
    child.kill(signal);
  } catch {
    /* already gone */
  }
}

/**
 * The one way a process of ours is ended: SIGTERM to its whole process group, SIGKILL after
 * `graceMs` to whatever is still there. `target` is a child we spawned (settles when it has
 * exited) or the id of a group a spawner worker started (settles when nothing in it is left, or
 * after twice the grace period). Never rejects; a no-op for what has already ended.
 */
export function terminate(target: ChildProcess | number, graceMs = 5000): Promise<void> {
  if (typeof target === 'number') return endGroup(target, graceMs);
  const child = target;
  if (child.pid === undefined || exited(child)) return Promise.resolve();
  killTree(child, 'SIGTERM');
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      if (!exited(child)) killTree(child, 'SIGKILL');
    }, graceMs);
    timer.unref();
    child.once('exit', () => (clearTimeout(timer), resolve()));
    // The exit may have come between the check above and the listener.
    if (exited(child)) (clearTimeout(timer), resolve());
  });
}

async function endGroup(pgid: number, graceMs: number): Promise<void> {
  if (!signalGroup(pgid, 'SIGTERM')) return;
  const started = Date.now();
  let killed = false;
  // A group has no exit event: polled. A job holding a table lock must be gone before its end is reported.
  while (signalGroup(pgid, 0) && Date.now() - started < 2 * graceMs) {
    if (!killed && Date.now() - started >= graceMs) killed = signalGroup(pgid, 'SIGKILL') || true;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** terminate() for every live child and group (our SIGTERM); returns how many there were. */
export function terminateAll(graceMs = 5000): number {
  const n = live.size + groups.size;
  for (const child of live) void terminate(child, graceMs);
  for (const pgid of groups) void terminate(pgid, graceMs);
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
