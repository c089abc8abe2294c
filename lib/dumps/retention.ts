import { readdirSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { IN_PROGRESS } from '../model/dump-dir.js';
import { compareRunIds, LATEST, RUN_ID } from './layout.js';
import type { Manifest } from '../model/manifest.js';
import { readManifestFile } from './manifest-file.js';

export interface StoredRun {
  readonly runId: string;
  readonly dir: string;
  readonly status: 'complete' | 'failed' | 'unreadable';
  /** The manifest, when it could be read. */
  readonly manifest?: Manifest;
}

/** Finished runs, newest first (run ids sort by time). */
export function listRuns(dumpsDir: string): StoredRun[] {
  let names: string[];
  try {
    names = readdirSync(dumpsDir);
  } catch {
    return [];
  }
  return names
    .filter((n) => RUN_ID.test(n))
    .sort(compareRunIds)
    .reverse()
    .map((runId) => {
      const dir = join(dumpsDir, runId);
      try {
        const m = readManifestFile(dir);
        return { runId, dir, status: m.status === 'complete' ? 'complete' : 'failed', manifest: m } as StoredRun;
      } catch {
        return { runId, dir, status: 'unreadable' } as StoredRun;
      }
    });
}

export function latestRunId(dumpsDir: string): string | undefined {
  try {
    return readlinkSync(join(dumpsDir, LATEST));
  } catch {
    return undefined;
  }
}

/** `mysql\0shop_db`: one database of one kind. */
export function databaseKey(kind: string, database: string): string {
  return `${kind}\0${database}`;
}

/** What retention needs to know of one run. */
export interface RunFacts {
  readonly runId: string;
  readonly status: 'complete' | 'failed' | 'unreadable';
  /** When the run's dumps were made (ms since epoch). */
  readonly at: number;
  /** databaseKey of every database with a good dump in this run. */
  readonly good: readonly string[];
}

export interface RetentionPolicy {
  /** Complete runs to keep (dumps.keep). */
  readonly keep: number;
  /** dumps.keep_gone in ms. */
  readonly keepGoneMs: number;
  readonly now: number;
  /** Never deleted: `latest`, runs a backup is reading, the run just written. */
  readonly protectedRuns: ReadonlySet<string>;
  /**
   * Does the database still exist? true/false when this run's listing of its server says so;
   * undefined when nobody knows (the server did not answer): then it counts as existing.
   */
  exists(key: string): boolean | undefined;
}

export interface RetentionDecision {
  readonly remove: readonly string[];
  /** Runs kept only because they hold the newest good dump of these databases (beyond dumps.keep). */
  readonly keptFor: ReadonlyMap<string, readonly string[]>;
}

/**
 * Which runs to delete (pure: the tests feed it any history). Runs are whole units; the rules:
 * 1. the newest `keep` complete runs stay, and failed runs newer than the newest complete one
 *    (their good dumps may be the only ones of that day);
 * 2. a run holding the newest good dump of a database stays while that database exists (or its
 *    server did not answer), or for `keep_gone` after that dump when it is gone: after any
 *    number of failed, partial or empty nights, every database still has its newest good dump;
 * 3. protected runs (latest, pinned, current) stay. Everything else goes.
 * `runs` is newest first.
 */
export function chooseRemovals(runs: readonly RunFacts[], policy: RetentionPolicy): RetentionDecision {
  const newestGood = new Map<string, RunFacts>();
  for (const run of runs) for (const key of run.good) if (!newestGood.has(key)) newestGood.set(key, run);
  const keptFor = new Map<string, string[]>();
  for (const [key, run] of newestGood) {
    const exists = policy.exists(key);
    const wanted = exists !== false || policy.now - run.at < policy.keepGoneMs;
    if (wanted) keptFor.set(run.runId, [...(keptFor.get(run.runId) ?? []), key]);
  }
  const newestComplete = runs.find((r) => r.status === 'complete');
  const remove: string[] = [];
  let completeSeen = 0;
  for (const run of runs) {
    let byAge: boolean;
    if (run.status === 'complete') byAge = ++completeSeen > policy.keep;
    else byAge = newestComplete !== undefined && compareRunIds(run.runId, newestComplete.runId) < 0;
    if (!byAge || policy.protectedRuns.has(run.runId)) {
      keptFor.delete(run.runId); // kept anyway: not "because of" a database
      continue;
    }
    if (keptFor.has(run.runId)) continue;
    remove.push(run.runId);
  }
  return { remove, keptFor };
}

/** The run id's own clock (20261126T030512Z) when the manifest has none. */
export function runIdTime(runId: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z/.exec(runId);
  return m ? Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!) : 0;
}

export function runFacts(run: StoredRun): RunFacts {
  const m = run.manifest;
  const at = m ? Date.parse(m.startedAt) || runIdTime(run.runId) : runIdTime(run.runId);
  const good = (m?.entries ?? []).filter((e) => e.status === 'ok' && e.object === 'database' && e.database !== null).map((e) => databaseKey(e.kind, e.database!));
  return { runId: run.runId, status: run.status, at, good };
}

export interface ApplyRetentionOptions {
  readonly keep: number;
  readonly keepGoneMs: number;
  readonly log: Logger;
  readonly pinned?: ReadonlySet<string>;
  /** The run just written (never deleted, its .inprogress neither). */
  readonly current?: string;
  /** See RetentionPolicy.exists; default: every database counts as existing (keep everything it needs). */
  readonly exists?: (key: string) => boolean | undefined;
  readonly now?: number;
}

/**
 * Delete what chooseRemovals says, plus `.inprogress` directories of crashed runs (the caller
 * holds the lock, so nobody writes them). Returns the names removed.
 */
export function applyRetention(dumpsDir: string, options: ApplyRetentionOptions): string[] {
  const runs = listRuns(dumpsDir);
  const latest = latestRunId(dumpsDir);
  const protectedRuns = new Set([...(options.pinned ?? []), ...(latest ? [latest] : []), ...(options.current ? [options.current] : [])]);
  const decision = chooseRemovals(runs.map(runFacts), {
    keep: options.keep,
    keepGoneMs: options.keepGoneMs,
    now: options.now ?? Date.now(),
    protectedRuns,
    exists: options.exists ?? (() => undefined),
  });
  const removed: string[] = [];
  for (const runId of decision.remove) {
    rmSync(join(dumpsDir, runId), { recursive: true, force: true });
    removed.push(runId);
  }
  removed.push(...removeCrashedRuns(dumpsDir, options.current));
  if (removed.length) options.log.debug('retention removed old runs', { removed });
  for (const [runId, keys] of decision.keptFor) {
    options.log.debug(`retention keeps ${runId}: newest good dump of ${keys.map((k) => k.replace('\0', ' ')).join(', ')}`);
  }
  return removed;
}

/** `.inprogress` directories left by a crash (never a good dump: not complete, not verified as a run). */
export function removeCrashedRuns(dumpsDir: string, current?: string): string[] {
  const removed: string[] = [];
  for (const name of safeReaddir(dumpsDir)) {
    if (name.endsWith(IN_PROGRESS) && name !== `${current}${IN_PROGRESS}`) {
      rmSync(join(dumpsDir, name), { recursive: true, force: true });
      removed.push(name);
    }
  }
  return removed;
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir).filter((n) => statSync(join(dir, n)).isDirectory());
  } catch {
    return [];
  }
}

/**
 * Binlog copies (`binlog follow`) no kept dump needs: those before the file of the oldest binlog
 * position a kept run's dumps recorded. They go with the dumps they served; with no position
 * recorded yet, none goes (the first dump with one may come tonight). Names, oldest first.
 */
export function binlogRemovals(files: readonly { readonly name: string; readonly seq: number }[], runs: readonly StoredRun[], seqOf: (name: string) => number | undefined): string[] {
  let oldest: number | undefined;
  for (const run of runs) {
    for (const e of run.manifest?.entries ?? []) {
      const seq = e.status === 'ok' && e.binlog ? seqOf(e.binlog.file) : undefined;
      if (seq !== undefined && (oldest === undefined || seq < oldest)) oldest = seq;
    }
  }
  if (oldest === undefined) return [];
  const newest = files.at(-1)?.seq;
  return files.filter((f) => f.seq < oldest! && f.seq !== newest).map((f) => f.name);
}
