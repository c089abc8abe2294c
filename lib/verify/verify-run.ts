import { readManifestFile } from '../dumps/manifest-file.js';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, realpathSync, statfsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { LoadedConfig } from '../config/load.js';
import { LATEST, MANIFEST, RUN_ID } from '../dumps/layout.js';
import type { ManifestEntry } from '../model/manifest.js';
import { BackupError, CommandError, UsageError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import type { Logger } from '../log.js';
import { errorLine } from '../proc/command.js';
import { compareWithInventory } from '../model/inventory-compare.js';
import { loadAndInventory, VerifyUnavailableError } from './load.js';
import { chooseEntries } from '../model/verify-rotation.js';
import { ThrowawayServers } from './servers.js';
import { readVerifyState, recordVerifications, verifyStateFile, type DatabaseVerification, type VerifyState } from '../model/verify-state.js';

export interface VerifyInput {
  readonly loaded: LoadedConfig;
  readonly log: Logger;
  readonly signal?: AbortSignal;
  /** A run id in dumps.dir; default the newest complete run (`latest`). */
  readonly runId?: string;
  readonly sample: number | 'all';
  readonly trigger: 'manual' | 'nightly';
  readonly onDatabase?: (result: DatabaseVerification) => void;
  /** A dump's check begins (`index` of `total`): the terminal's progress display. */
  readonly onStart?: (entry: ManifestEntry, index: number, total: number) => void;
}

export interface VerifyResult {
  readonly runId: string;
  readonly results: readonly DatabaseVerification[];
  readonly state: VerifyState;
  /** Every checked dump passed (false also when one could not be checked). */
  readonly ok: boolean;
  readonly exitCode: ExitCode;
}

/**
 * verify: prove that dumps load. Each chosen database dump is hashed again (sha256 against the
 * manifest), loaded into a throwaway server of the same major version, and what arrived is
 * compared with the inventory the server had at dump time. Server-wide exports (users, roles)
 * are hashed too. Results go to verify.json for status, metrics and the rotation.
 */
export async function verifyRun(input: VerifyInput): Promise<VerifyResult> {
  const { loaded, log, signal } = input;
  const { runId, dir } = resolveRun(loaded.paths.dumpsDir, input.runId);
  const manifest = readManifestFile(dir);
  const stateFile = verifyStateFile(loaded.paths.stateDir);
  const chosen = [...manifest.entries.filter((e) => e.object !== 'database' && e.status === 'ok' && e.path), ...chooseEntries(manifest.entries, readVerifyState(stateFile), input.sample)];
  const started = Date.now();
  const results: DatabaseVerification[] = [];
  let bytes = 0;
  let servers: ThrowawayServers | undefined;
  try {
    for (const [index, entry] of chosen.entries()) {
      if (signal?.aborted) throw signal.reason;
      input.onStart?.(entry, index, chosen.length);
      if (entry.object === 'database') servers ??= new ThrowawayServers(loaded.config.verify.work_dir, log, loaded);
      const result = await verifyEntry(entry, dir, runId, servers, signal);
      bytes += entry.bytes ?? 0;
      results.push(result);
      (result.outcome === 'ok' ? log.info : result.outcome === 'error' ? log.warn : log.error).call(log, `verify ${label(entry)}: ${result.outcome}${result.problems.length ? `: ${result.problems.join('; ')}` : ''}`, { runId });
      input.onDatabase?.(result);
    }
  } finally {
    await servers?.destroy();
  }
  const failed = results.filter((r) => r.outcome === 'failed').length;
  const errors = results.filter((r) => r.outcome === 'error').length;
  const state = recordVerifications(stateFile, results, { at: new Date().toISOString(), runId, trigger: input.trigger, checked: results.length, failed, errors, durationMs: Date.now() - started, bytes });
  const ok = failed === 0 && errors === 0;
  return { runId, results, state, ok, exitCode: ok ? ExitCode.OK : ExitCode.VERIFY_FAILED };
}

function label(entry: ManifestEntry): string {
  return entry.object === 'database' ? `${entry.kind} '${entry.database}'` : `${entry.kind} ${entry.object} export`;
}

async function verifyEntry(entry: ManifestEntry, runDir: string, runId: string, servers: ThrowawayServers | undefined, signal?: AbortSignal): Promise<DatabaseVerification> {
  const started = Date.now();
  const base = { kind: entry.kind, database: entry.database ?? `(${entry.object})`, site: entry.site, runId, lastAttemptAt: new Date().toISOString() };
  const done = (outcome: DatabaseVerification['outcome'], problems: string[], notes: string[] = []): DatabaseVerification => ({
    ...base,
    outcome,
    problems,
    ...(notes.length ? { notes } : {}),
    seconds: Math.round((Date.now() - started) / 100) / 10,
  });
  const file = join(runDir, entry.path!);
  const hash = await sha256(file).catch((err: Error) => err);
  if (hash instanceof Error) return done('failed', [`cannot read ${entry.path}: ${hash.message}`]);
  if (hash !== entry.sha256) return done('failed', [`${entry.path}: sha256 does not match the manifest (changed or damaged since the dump)`]);
  if (entry.object !== 'database' || !servers) return done('ok', []);

  const room = freeBytes(servers.workDir);
  if (room !== undefined && entry.bytes !== undefined && room < entry.bytes) {
    return done('error', [`cannot verify: ${servers.workDir} (verify.work_dir) has ${room} bytes free, less than the compressed dump (${entry.bytes})`]);
  }
  let loadedInventory;
  const accountProblems: string[] = [];
  const accountNotes: string[] = [];
  try {
    loadedInventory = await loadAndInventory(entry, runDir, servers, signal, accountProblems, accountNotes);
  } catch (err) {
    if (signal?.aborted) throw err;
    if (err instanceof VerifyUnavailableError) return done('error', [`cannot verify: ${err.message}`]);
    const why = err instanceof CommandError ? errorLine(err.stderrTail) || err.message : (err as Error).message;
    // The throwaway server's disk filled up: our problem, not the dump's.
    if (DISK_FULL.test(why)) return done('error', [`cannot verify: ${servers.workDir} (verify.work_dir) ran out of space: ${why}`]);
    return done('failed', [`does not load: ${why}`]);
  }
  if (!entry.inventory) return done(accountProblems.length ? 'failed' : 'ok', accountProblems, [`loaded, but the manifest has no inventory to compare with${entry.inventoryError ? ` (${entry.inventoryError})` : ''}`, ...accountNotes]);
  // The comparison `restore db` makes too (model/inventory-compare.ts).
  const comparison = compareWithInventory(entry.inventory, loadedInventory);
  const problems = [...comparison.problems, ...accountProblems];
  return done(problems.length ? 'failed' : 'ok', problems, [...comparison.notes, ...accountNotes]);
}

/** MariaDB 1114/1021/28, PostgreSQL "could not extend file … No space left on device". */
const DISK_FULL = /No space left on device|errno: 28|Disk full|\b1114\b.*is full|could not extend file/i;

function freeBytes(dir: string): number | undefined {
  try {
    const s = statfsSync(dir);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}

async function sha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
}

/** The run directory for an id, or `latest`. */
function resolveRun(dumpsDir: string, runId: string | undefined): { runId: string; dir: string } {
  if (runId !== undefined && !RUN_ID.test(runId)) throw new UsageError(`--run: '${runId}' is not a run id (like 20261126T030512Z)`);
  const dir = join(dumpsDir, runId ?? LATEST);
  if (!existsSync(join(dir, MANIFEST))) {
    throw new BackupError(runId ? `run ${runId} not found in ${dumpsDir} (or it has no manifest)` : `no complete run in ${dumpsDir} yet: nothing to verify`, ExitCode.USAGE, { dumpsDir });
  }
  return { runId: runId ?? basename(realpathSync(dir)), dir };
}
