import { readFileSync } from 'node:fs';
import { writeFileAtomic } from '../atomic-file.js';
import type { RunState } from './run-state.js';

/** The status file holds no secrets (problems are one-line messages): world-readable for monitoring agents. */
export function writeRunState(file: string, state: RunState): void {
  writeFileAtomic(file, JSON.stringify(state, null, 2) + '\n', { mode: 0o644, dirMode: 0o755 });
}

export type ReadResult = { state: RunState; reason?: undefined } | { state: undefined; reason: string };

/**
 * Read the status file. A missing file means "never ran"; a corrupt one (disk full, edited by
 * hand) must not crash `status` or a nightly run: both come back as undefined with the reason.
 */
export function readRunStateWithReason(file: string): ReadResult {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { state: undefined, reason: code === 'ENOENT' ? `${file} does not exist (no run recorded yet)` : `${file}: cannot read: ${(err as Error).message}` };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return { state: undefined, reason: `${file}: not valid JSON: ${(err as Error).message}` };
  }
  const problem = shapeProblem(raw);
  if (problem) return { state: undefined, reason: `${file}: ${problem}` };
  return { state: raw as RunState };
}

export function readRunState(file: string): RunState | undefined {
  return readRunStateWithReason(file).state;
}

/** Just enough checking that the readers (status, prometheus, summary) can trust the fields they use. */
function shapeProblem(raw: unknown): string | undefined {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'not a JSON object';
  const s = raw as Record<string, unknown>;
  if (s.version !== 1) return `unknown version ${JSON.stringify(s.version)}`;
  if (typeof s.startedAt !== 'string' || Number.isNaN(Date.parse(s.startedAt))) return 'startedAt missing or not a date';
  if (!['running', 'ok', 'warning', 'failed'].includes(s.status as string)) return `unknown status ${JSON.stringify(s.status)}`;
  if (typeof s.engine !== 'string') return 'engine missing';
  if (!Array.isArray(s.problems)) return 'problems missing';
  if (s.warnings !== undefined && !(Array.isArray(s.warnings) && s.warnings.every((w) => typeof w === 'object' && w !== null && typeof (w as { message?: unknown }).message === 'string'))) {
    return 'warnings is not a list of {code, message}';
  }
  for (const key of ['finishedAt', 'lastSuccessAt'] as const) {
    if (s[key] !== undefined && (typeof s[key] !== 'string' || Number.isNaN(Date.parse(s[key] as string)))) return `${key} is not a date`;
  }
  return undefined;
}

/**
 * Did this run leave a usable backup? 'warning' counts (restic exit 3, Bacula "OK -- with
 * warnings": a backup exists). A Bacula pre-backup dump run ('pending') does not: the job itself
 * has not finished yet, its post-backup hook reports that. Engine 'none' only dumps, so good
 * dumps are the success.
 */
export function isSuccessfulRun(state: RunState): boolean {
  if (state.status !== 'ok' && state.status !== 'warning') return false;
  const backup = state.backup?.status;
  if (backup === undefined) return true;
  if (backup === 'ok' || backup === 'warning') return true;
  return state.engine === 'none' && backup !== 'failed';
}

/** Did the engine make a backup whose level extends the restore chain? */
function madeBackup(state: RunState): boolean {
  return (state.backup?.status === 'ok' || state.backup?.status === 'warning') && state.level !== undefined;
}

/**
 * Carry what only history knows into the state about to be written: the watchdog clock
 * (lastSuccessAt) and the restore chain. The seed's point: after a Full, every Incremental adds
 * one more backup a restore must replay; a Differential replaces all incrementals since the Full,
 * so the count restarts there. restic/borg snapshots are self-contained: a chain of one.
 */
export function mergeRunState(previous: RunState | undefined, current: RunState): RunState {
  const at = current.finishedAt ?? current.startedAt;
  const success = current.status !== 'running' && isSuccessfulRun(current);
  const lastSuccessAt = latest(previous?.lastSuccessAt, current.lastSuccessAt, success ? at : undefined);

  let chain = current.chain ?? previous?.chain;
  if (current.status !== 'running' && madeBackup(current)) {
    const before = previous?.chain;
    switch (current.level) {
      case 'Full':
      case 'Snapshot':
        chain = { lastFullAt: at, incrementalsSince: 0 };
        break;
      case 'Differential':
        chain = { lastFullAt: before?.lastFullAt, lastDifferentialAt: at, incrementalsSince: 0 };
        break;
      case 'Incremental':
        chain = { lastFullAt: before?.lastFullAt, lastDifferentialAt: before?.lastDifferentialAt, incrementalsSince: (before?.incrementalsSince ?? 0) + 1 };
        break;
    }
  }
  return dropUndefined({ ...current, lastSuccessAt, chain: chain && dropUndefined(chain) });
}

/**
 * How many backups a restore must read: the Full, the newest Differential (if any), then every
 * Incremental since. Undefined when no backup is known.
 */
export function restoreChainLength(chain: RunState['chain']): number | undefined {
  if (!chain) return undefined;
  if (!chain.lastFullAt && !chain.lastDifferentialAt && chain.incrementalsSince === 0) return undefined;
  return 1 + (chain.lastDifferentialAt ? 1 : 0) + chain.incrementalsSince;
}

function latest(...dates: (string | undefined)[]): string | undefined {
  let best: string | undefined;
  for (const d of dates) {
    if (d !== undefined && !Number.isNaN(Date.parse(d)) && (best === undefined || Date.parse(d) > Date.parse(best))) best = d;
  }
  return best;
}

// JSON.stringify drops undefined anyway; dropping them here keeps test equality and diffs clean.
function dropUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
