import { existsSync, mkdirSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fsyncDir, writeFileAtomic } from '../atomic-file.js';
import { atLastResort } from '../last-resort.js';
import { BackupError, DumpStorageError } from '../errors.js';
import { IN_PROGRESS } from '../model/dump-dir.js';
import { MANIFEST_VERSION, type Manifest, type ManifestEntry } from '../model/manifest.js';
import { readManifestIfAny } from './manifest-file.js';
import { syncFilesystem } from '../proc/sync-fs.js';
import { LATEST, MANIFEST, newRunId } from './layout.js';
import { applyRetention, removeCrashedRuns, type ApplyRetentionOptions } from './retention.js';
import { checkSpace } from './space.js';

/**
 * The life of one run directory, apart from what is dumped into it:
 *
 *   openRunDirectory()  crash leftovers removed, space checked, `<runId>.inprogress/` created
 *   add(entry)          one manifest entry per dump written under `path`
 *   complete(facts)     every file durable, manifest written, renamed to `<runId>/`, `latest`
 *                       moved to it when every entry is ok
 *   abandon()           the unfinished directory removed (interrupted, or complete() failed)
 *   retain(policy)      after complete(): retention over the whole runs (never before: a failed
 *                       or empty night must not cost the last good dump)
 *
 * Nothing here touches a previous run except retain(): a failure anywhere leaves them as they were.
 */
export interface RunDirectory {
  /** 20261126T030512Z (or `-1`, `-2`… when that name is taken): the on-disk name and the manifest's runId. */
  readonly runId: string;
  /** Where the dumps are written: `<dumps.dir>/<runId>.inprogress`. */
  readonly path: string;
  /** The newest complete run's manifest before this one (sizes, accounting), if readable. */
  readonly previous: Manifest | undefined;
  readonly entries: readonly ManifestEntry[];
  add(entry: ManifestEntry): void;
  complete(facts: ManifestFacts, options?: CompleteOptions): Promise<CompletedRun>;
  abandon(): void;
  retain(policy: Omit<ApplyRetentionOptions, 'current'>): string[];
}

/** What the manifest says beyond the entries; the directory fills in id, host, times and status. */
export type ManifestFacts = Pick<Manifest, 'method'> & Partial<Pick<Manifest, 'servers' | 'missing' | 'warnings'>>;

export interface CompleteOptions {
  /** Every file was fsynced as it was written (dumps.sync: file): no syncfs needed first. */
  readonly filesSynced?: boolean;
  readonly signal?: AbortSignal;
}

export interface CompletedRun {
  readonly runId: string;
  /** `<dumps.dir>/<runId>`. */
  readonly dir: string;
  readonly manifest: Manifest;
  /** Every entry ok: the manifest says complete and `latest` points here. */
  readonly ok: boolean;
}

export interface OpenOptions {
  /** dumps.space_margin: free space needed is the previous run's size times this. */
  readonly spaceMargin: number;
  /** The run's start (its id); default now. */
  readonly startedAt?: Date;
}

export function openRunDirectory(dumpsDir: string, options: OpenOptions): RunDirectory {
  const started = options.startedAt ?? new Date();
  // Run ids have one-second resolution: a second run within the same second, or after the clock
  // stepped back, would collide with an existing run (and its final rename fail with ENOTEMPTY).
  const runId = freeRunId(dumpsDir, newRunId(started));
  const path = join(dumpsDir, runId + IN_PROGRESS);
  const final = join(dumpsDir, runId);
  const previous = readLatestManifest(dumpsDir);
  try {
    removeCrashedRuns(dumpsDir);
    // Space before work: fail now, naming the dir, the space needed and free, before anything
    // is written or deleted.
    checkSpace(dumpsDir, previous, options.spaceMargin);
    mkdirSync(dumpsDir, { recursive: true, mode: 0o700 });
    mkdirSync(path, { mode: 0o700 });
  } catch (err) {
    if (err instanceof BackupError) throw err;
    throw new DumpStorageError(runId, `cannot write the dump directory ${dumpsDir}: ${(err as Error).message}`, dumpsDir);
  }

  const entries: ManifestEntry[] = [];
  let state: 'open' | 'complete' | 'abandoned' = 'open';
  // Removed on a last-resort exit too (a second signal): no unfinished run left behind.
  const forget = atLastResort(() => rmSync(path, { recursive: true, force: true }));
  const expect = (want: typeof state, what: string): void => {
    if (state !== want) throw new Error(`run directory ${runId}: ${what} after it was ${state}`);
  };
  return {
    runId,
    path,
    previous,
    entries,
    add(entry) {
      expect('open', 'add()');
      entries.push(entry);
    },
    async complete(facts, opts = {}) {
      expect('open', 'complete()');
      const ok = entries.every((e) => e.status === 'ok');
      const manifest: Manifest = {
        version: MANIFEST_VERSION,
        runId,
        host: hostname(),
        tool: 'apiscp-backup',
        startedAt: started.toISOString(),
        finishedAt: new Date().toISOString(),
        status: ok ? 'complete' : 'failed',
        method: facts.method,
        entries: sortEntries(entries),
        servers: facts.servers,
        missing: facts.missing,
        warnings: facts.warnings,
      };
      try {
        // Every dump durable before the manifest says the run is complete (dumps.sync: run).
        if (!opts.filesSynced) await syncFilesystem(path, opts.signal);
        writeFileAtomic(join(path, MANIFEST), JSON.stringify(manifest, null, 2) + '\n');
        await rename(path, final);
        forget();
        fsyncDir(dumpsDir);
        if (ok) {
          pointLatest(dumpsDir, runId);
          fsyncDir(dumpsDir);
        }
      } catch (err) {
        // Disk full or gone read-only at the very end: without a manifest the run is not a run
        // (abandon() removes it). An error that says so, not an "internal error" (exit 70).
        throw new DumpStorageError(runId, `cannot finish run ${runId} in ${dumpsDir}: ${(err as Error).message}`, dumpsDir);
      }
      state = 'complete';
      return { runId, dir: final, manifest, ok };
    },
    abandon() {
      if (state === 'complete') return;
      state = 'abandoned';
      rmSync(path, { recursive: true, force: true });
      forget();
    },
    retain(policy) {
      expect('complete', 'retain()');
      return applyRetention(dumpsDir, { ...policy, current: runId });
    },
  };
}

/** The newest complete run's manifest (undefined on a first run or when it cannot be read). */
export function readLatestManifest(dumpsDir: string): Manifest | undefined {
  return readManifestIfAny(join(dumpsDir, LATEST));
}

/** `latest` flips atomically: a new symlink under a temporary name renamed over the old one. */
export function pointLatest(dumpsDir: string, runId: string): void {
  const tmp = join(dumpsDir, `.${LATEST}.${process.pid}.tmp`);
  rmSync(tmp, { force: true });
  symlinkSync(runId, tmp);
  renameSync(tmp, join(dumpsDir, LATEST));
}

/** `base`, or `base-1`, `base-2`… when a run (finished or not) already has that name. */
function freeRunId(dumpsDir: string, base: string): string {
  let id = base;
  for (let n = 1; existsSync(join(dumpsDir, id)) || existsSync(join(dumpsDir, id + IN_PROGRESS)); n++) id = `${base}-${n}`;
  return id;
}

function sortEntries(entries: readonly ManifestEntry[]): ManifestEntry[] {
  return [...entries].sort((a, b) => (a.site + a.kind + (a.database ?? '')).localeCompare(b.site + b.kind + (b.database ?? '')));
}
