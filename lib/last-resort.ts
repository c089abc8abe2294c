/**
 * Cleanups that must still happen when the orderly path cannot: a second signal, or the first
 * signal's deadline passed with the job still unwinding. Each is synchronous (the process exits
 * right after) and idempotent; whoever registers one unregisters it once it cleaned up itself.
 * Releasing the lock, removing a secret directory or an unfinished run directory are here; the
 * children are killed by lib/proc/process-group.ts.
 */
const cleanups = new Set<() => void>();

/** Register `fn` for a last-resort exit; the returned function unregisters it. */
export function atLastResort(fn: () => void): () => void {
  cleanups.add(fn);
  return () => void cleanups.delete(fn);
}

/** Run every registered cleanup once (each failure ignored: the next one still runs). */
export function runLastResort(): void {
  for (const fn of [...cleanups].reverse()) {
    cleanups.delete(fn);
    try {
      fn();
    } catch {
      /* best effort: the process is exiting */
    }
  }
}
