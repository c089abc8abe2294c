import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../atomic-file.js';

/**
 * `<state.dir>/verify.json`: the last verification of every database (what `status`, the
 * Prometheus textfile and the nightly rotation read). World-readable like status.json: it
 * holds names and one-line problems, never secrets.
 */
export type VerifyOutcome = 'ok' | 'failed' | 'error';

export interface DatabaseVerification {
  readonly kind: string;
  readonly database: string;
  readonly site: string;
  /** When this database was last checked, whatever the outcome (the rotation's clock). */
  readonly lastAttemptAt: string;
  /** When it last passed. */
  readonly lastVerifiedAt?: string;
  /** The run whose dump was checked last. */
  readonly runId: string;
  /** ok = loaded and matched the inventory; failed = the dump is bad; error = could not be checked. */
  readonly outcome: VerifyOutcome;
  readonly problems: readonly string[];
  /** What was not compared and why (tables written while the dump ran, no inventory). */
  readonly notes?: readonly string[];
  readonly seconds?: number;
}

export interface VerifyRunSummary {
  readonly at: string;
  readonly runId: string;
  readonly trigger: 'manual' | 'nightly';
  readonly checked: number;
  readonly failed: number;
  readonly errors: number;
  readonly durationMs: number;
  /** Bytes of the dump files loaded (compressed, as stored). */
  readonly bytes: number;
  /** The verification could not run at all (then nothing above was checked). */
  readonly error?: string;
}

export interface VerifyState {
  readonly version: 1;
  /** Keyed by databaseKey(). */
  readonly databases: Readonly<Record<string, DatabaseVerification>>;
  readonly lastRun?: VerifyRunSummary;
}

export function databaseKey(kind: string, database: string): string {
  return `${kind}:${database}`;
}

export function verifyStateFile(stateDir: string): string {
  return join(stateDir, 'verify.json');
}

export function readVerifyState(file: string): VerifyState | undefined {
  try {
    const raw = JSON.parse(readFileSync(file, 'utf8')) as VerifyState;
    return raw && raw.version === 1 && typeof raw.databases === 'object' ? raw : undefined;
  } catch {
    return undefined;
  }
}

/** Merge one verification's results into the state and write it. */
export function recordVerifications(file: string, results: readonly DatabaseVerification[], summary: VerifyRunSummary): VerifyState {
  const before = readVerifyState(file);
  const databases: Record<string, DatabaseVerification> = { ...(before?.databases ?? {}) };
  for (const r of results) {
    const previous = databases[databaseKey(r.kind, r.database)];
    databases[databaseKey(r.kind, r.database)] = { ...r, lastVerifiedAt: r.outcome === 'ok' ? r.lastAttemptAt : previous?.lastVerifiedAt };
  }
  const state: VerifyState = { version: 1, databases, lastRun: summary };
  writeFileAtomic(file, JSON.stringify(state, null, 2) + '\n', { mode: 0o644, dirMode: 0o755 });
  return state;
}

/** A nightly verification that could not start: remembered so `status` warns and the rotation retries next night. */
export function recordVerifyError(file: string, error: string): void {
  const before = readVerifyState(file);
  const lastRun: VerifyRunSummary = { at: new Date().toISOString(), runId: '', trigger: 'nightly', checked: 0, failed: 0, errors: 1, durationMs: 0, bytes: 0, error };
  try {
    writeFileAtomic(file, JSON.stringify({ version: 1, databases: before?.databases ?? {}, lastRun }, null, 2) + '\n', { mode: 0o644, dirMode: 0o755 });
  } catch {
    /* the state dir itself is unwritable: the run's own record says so */
  }
}
