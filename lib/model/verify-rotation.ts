import type { ManifestEntry } from './manifest.js';
import { databaseKey, type VerifyState } from './verify-state.js';

/**
 * Which databases a verification checks. `all`, or a sample of N chosen by rotation: databases
 * never checked first, then those checked longest ago (by last attempt, so one that keeps
 * failing cannot hold the queue). With D databases and N per verification, every database is
 * checked at least once every ceil(D / N) verifications (nights for `nightly`, weeks for
 * `weekly`); databases created meanwhile join at the front.
 */
export function chooseEntries(entries: readonly ManifestEntry[], state: VerifyState | undefined, sample: number | 'all'): ManifestEntry[] {
  const candidates = entries.filter((e) => e.object === 'database' && e.status === 'ok' && e.database !== null);
  if (sample === 'all') return candidates;
  const last = (e: ManifestEntry): number => {
    const at = state?.databases[databaseKey(e.kind, e.database!)]?.lastAttemptAt;
    return at === undefined ? -Infinity : Date.parse(at);
  };
  const key = (e: ManifestEntry): string => databaseKey(e.kind, e.database!);
  return [...candidates].sort((a, b) => last(a) - last(b) || (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0)).slice(0, Math.max(0, sample));
}

/** Verifications needed to cover every database once: the "known number of nights". */
export function rotationLength(databases: number, sample: number): number {
  return sample <= 0 ? Infinity : Math.max(1, Math.ceil(databases / sample));
}
