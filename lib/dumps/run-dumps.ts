import { createHash } from 'node:crypto';
import { mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { setMaxListeners } from 'node:events';
import { dirname, join } from 'node:path';
import { tempNameFor, writeFileAtomic } from '../atomic-file.js';
import type { LoadedConfig } from '../config/load.js';
import { durationMs, sizeBytes } from '../config/schema.js';
import { BackupError, InterruptedError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import type { Logger } from '../log.js';
import type { Plan, PlannedDump, SiteLookup } from '../model/plan.js';
import type { Command } from '../proc/command.js';
import { pool } from '../pool.js';
import { pipeToFile } from '../proc/pipeline.js';
import { RateLimit } from '../proc/rate-limit.js';
import { Spawner } from '../proc/spawner.js';
import { whichSystem } from '../proc/which.js';
import { dumpPath } from './layout.js';
import type { InventoryProbe } from '../model/inventory.js';
import { warning, WarningCodes } from '../warnings.js';
import type { Manifest, ManifestEntry } from '../model/manifest.js';
import { accountForDatabases } from './accounting.js';
import { openRunDirectory, type CompletedRun } from './run-directory.js';
import { ServerPacer } from './throttle.js';
import { dumpTuning } from './tuning.js';
import type { Compression, DumpWatch, LockWait } from '../model/kind.js';

export interface DumpPlanInput {
  readonly loaded: LoadedConfig;
  readonly log: Logger;
  /** What to dump (job/ builds it with plan/ and closes its sessions afterwards). */
  readonly plan: Plan;
  readonly siteOf: SiteLookup;
  readonly signal?: AbortSignal;
  /** The panel's own backup_dbs.php, when databases.method is apnscp or both. */
  readonly panelExport?: (signal?: AbortSignal) => Promise<ManifestEntry>;
  readonly onProgress?: (done: number, total: number, current: string) => void;
  /** Each dump as it starts and ends, with the bytes it has written so far (the terminal's progress display). */
  readonly onDump?: (event: DumpEvent) => void;
  /** A dump (`what`: "mysql 'db'") waits for a lock another session holds; undefined: it no longer waits. */
  readonly onLockWait?: (what: string, wait: LockWait | undefined) => void;
  /** Runs a backup is still reading (Bacula window): retention must not delete them. */
  readonly pinned?: ReadonlySet<string>;
}

/**
 * The plan's size (how many dumps, how many at a time; the previous run's bytes and time for
 * those it had), then each dump starting and ending, from the place that schedules them.
 * `written()` is what the dump has produced so far: the bytes its tool has streamed (before
 * compression, where the dump is checked while it streams), else the size of the file it is
 * writing (its temporary name; a retry writes a new one). A compressor writes in bursts of
 * megabytes, so the file alone would show a big dump standing still. `expectedBytes` and
 * `expectedMs` are the same dump's size and time in the previous run (the display's time left).
 */
export type DumpEvent =
  | { readonly type: 'plan'; readonly total: number; readonly slots: number; readonly expectedBytes?: number; readonly expectedMs?: number }
  | { readonly type: 'start'; readonly what: string; readonly site: string; readonly expectedBytes?: number; readonly expectedMs?: number; readonly written: () => number | undefined }
  | { readonly type: 'end'; readonly what: string; readonly site: string; readonly status: 'ok' | 'failed'; readonly bytes?: number; readonly durationMs: number };

/**
 * plan → dumps: every database into its own file, `dumps.concurrency` at a time. Each dump is
 * written under a temporary name, verified (while it streams, where the kind can) and only then
 * renamed. The run directory's own life (the `.inprogress` name, space, manifest, `latest`,
 * retention) is run-directory.ts: a failure never touches the previous runs; an interruption
 * removes the whole unfinished run.
 */
export async function dumpPlan(input: DumpPlanInput): Promise<CompletedRun> {
  const { loaded, log, signal } = input;
  const { config, paths } = loaded;
  // Every pipeline stage and every verification listens on the run's signal; with dumps.concurrency
  // 8 and verifications overlapping the next dumps that is more than Node's default of 10, which
  // prints MaxListenersExceededWarning (a cron mail on a healthy night). Listeners are removed as
  // each stage ends: this is the bound, not a leak.
  if (signal) setMaxListeners(Math.max(10, (config.dumps.concurrency === 'auto' ? 8 : config.dumps.concurrency) * 8 + 10), signal);
  const runDir = openRunDirectory(paths.dumpsDir, { spaceMargin: config.dumps.space_margin });
  const { previous } = runDir;
  const { plan } = input;
  // bash is on every RHEL and Debian; without it every dump streams through kernel pipes.
  const bash = whichSystem('bash');
  const spawner = bash ? new Spawner(bash) : undefined;
  try {
    plan.failures.forEach((f) => runDir.add(f));
    // Users/roles exports take a moment: a lone big database counts as alone beside them.
    const tuning = dumpTuning(config, plan.items.filter((i) => i.spec.object === 'database').length);
    const maxRate = config.dumps.max_rate === '0' ? undefined : new RateLimit(sizeBytes(config.dumps.max_rate));
    const output: DumpOutput = { compression: tuning.compression, compressor: tuning.compressor, fsync: tuning.sync === 'file', spawner, maxRate };
    const pacer = new ServerPacer(config.dumps.throttle, log);
    const total = plan.items.length + (input.panelExport ? 1 : 0);
    let done = 0;
    const timeoutMs = durationMs(config.dumps.timeout);
    // Largest first, by the previous run's sizes: the biggest database must not start last and
    // run alone while the other slots idle. A slot is held while the database is being dumped;
    // verification and rename overlap the next dump (measured with npm run bench:dumps).
    const sizes = previousSizes(previous);
    const times = previousTimes(previous);
    const known = plan.items.map((i) => sizes.get(sizeKey(i.spec.kind, i.spec.database, i.spec.object))).filter((n) => n !== undefined);
    const knownMs = plan.items.map((i) => times.get(sizeKey(i.spec.kind, i.spec.database, i.spec.object))).filter((n) => n !== undefined);
    const sum = (ns: number[]): number | undefined => (ns.length ? ns.reduce((a, b) => a + b, 0) : undefined);
    input.onDump?.({ type: 'plan', total, slots: tuning.concurrency, expectedBytes: sum(known), expectedMs: sum(knownMs) });
    await pool(largestFirst(plan.items, sizes), tuning.concurrency, async (item, release) => {
      if (signal?.aborted) return;
      const what = `${item.spec.kind} ${item.spec.database ?? item.spec.object}`;
      input.onProgress?.(done, total, what);
      const small = (sizes.get(sizeKey(item.spec.kind, item.spec.database, item.spec.object)) ?? Infinity) <= SMALL_DUMP_BYTES;
      const named = `${item.spec.kind} ${item.spec.database === null ? item.spec.object : `'${item.spec.database}'`}`;
      let tmp: string | undefined;
      let streamed: number | undefined;
      const how = { onWait: (w: LockWait | undefined) => input.onLockWait?.(named, w), onFile: (f: string) => void ((tmp = f), (streamed = undefined)), onStreamed: (n: number) => void (streamed = n) };
      const key = sizeKey(item.spec.kind, item.spec.database, item.spec.object);
      input.onDump?.({ type: 'start', what, site: item.site, expectedBytes: sizes.get(key), expectedMs: times.get(key), written: () => streamed ?? fileSize(tmp) });
      const attempt = (): Promise<Attempt> => pacer.run(item.session, what, () => dumpOne({ item, runDir: runDir.path, output, small, timeoutMs, log, how, signal, written: release }), signal);
      const entry = await dumpWithRetries(named, attempt, log, signal);
      runDir.add(entry);
      input.onDump?.({ type: 'end', what, site: item.site, status: entry.status, bytes: entry.bytes, durationMs: entry.durationMs });
      input.onProgress?.(++done, total, '');
    });
    if (input.panelExport && !signal?.aborted) {
      const started = Date.now();
      input.onDump?.({ type: 'start', what: 'panel backup_dbs.php', site: '_server', written: () => undefined });
      const entry = await input.panelExport(signal);
      runDir.add(entry);
      input.onDump?.({ type: 'end', what: 'panel backup_dbs.php', site: '_server', status: entry.status, bytes: entry.bytes, durationMs: Date.now() - started });
      input.onProgress?.(++done, total, '');
    }
    if (signal?.aborted) throw abortReason(signal);

    const expected = new Set(plan.servers.map((s) => s.kind));
    const accounted = accountForDatabases({ previous, entries: runDir.entries, expected, listed: plan.listed, siteOf: input.siteOf });
    for (const w of accounted.warnings) log.warn(w.message);
    const gone = accounted.missing.filter((m) => m.reason === 'gone' || m.reason === 'excluded');
    if (gone.length) log.info(`no longer dumped (deleted or excluded): ${gone.map((m) => `${m.kind} '${m.database}'`).join(', ')}`);
    const completed = await runDir.complete(
      { method: config.databases.method, servers: plan.servers, missing: accounted.missing, warnings: [...plan.warnings, ...accounted.warnings] },
      { filesSynced: output.fsync, signal },
    );
    runDir.retain({ keep: config.dumps.keep, keepGoneMs: durationMs(config.dumps.keep_gone), log, pinned: input.pinned, exists: existsNow(plan.listed) });
    return completed;
  } catch (err) {
    runDir.abandon();
    throw err;
  } finally {
    spawner?.close();
  }
}

/** A dump's size so far; undefined before its file exists (or after its rename: the end event has the size). */
function fileSize(file: string | undefined): number | undefined {
  if (!file) return undefined;
  try {
    return statSync(file).size;
  } catch {
    return undefined;
  }
}

/** Retention's view of "does it still exist": known for servers that listed their databases, unknown otherwise. */
function existsNow(listed: ReadonlyMap<string, ReadonlySet<string>>): (key: string) => boolean | undefined {
  return (key) => {
    const [kind = '', database = ''] = key.split('\0');
    const names = listed.get(kind);
    return names === undefined ? undefined : names.has(database);
  };
}

/**
 * A dump that failed because a table changed under it (DumpSpec.explainFailure: a TRUNCATE, a
 * rebuilding ALTER, a RENAME or DROP of a table not yet read) is dumped again from a new
 * snapshot, this many attempts in all, a short pause between them. Not dumps.retries: that
 * counts attempts to reach a server that does not answer, dumps.retry_wait (30 s) apart, and an
 * admin's `retries: 0` (fail fast when the server is down) must not make one TRUNCATE cost the night.
 */
export const TABLE_CHANGED_ATTEMPTS = 3;
const TABLE_CHANGED_PAUSE_MS = 1_000;

interface Attempt {
  readonly entry: ManifestEntry;
  /** Why a new attempt can succeed (a table changed under the dump). */
  readonly retry?: string;
}

async function dumpWithRetries(what: string, attempt: () => Promise<Attempt>, log: Logger, signal?: AbortSignal): Promise<ManifestEntry> {
  const reasons: string[] = [];
  for (let n = 1; ; n++) {
    const { entry, retry } = await attempt();
    if (retry === undefined || signal?.aborted) {
      if (!reasons.length) return entry;
      if (entry.status === 'ok') log.info(`${what}: dumped at attempt ${n} of ${TABLE_CHANGED_ATTEMPTS}`);
      return { ...entry, details: { ...entry.details, attempts: n, retriedFor: reasons } };
    }
    reasons.push(retry);
    if (n >= TABLE_CHANGED_ATTEMPTS) {
      const message = `failed ${n} times, each time because a table changed under the dump (attempt ${reasons.map((r, i) => `${i + 1}: ${r}`).join('; ')}); last error: ${entry.error?.message ?? 'unknown'}`;
      log.error(`${what} failed: ${message}`);
      return { ...entry, details: { ...entry.details, attempts: n, retriedFor: reasons }, error: { ...entry.error, message } };
    }
    log.warn(`${what}: attempt ${n} of ${TABLE_CHANGED_ATTEMPTS} failed: ${retry}; dumping it again from a new snapshot`);
    await pause(TABLE_CHANGED_PAUSE_MS * n, signal);
  }
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** One attempt at one dump (dumpWithRetries may make more). */
interface DumpAttemptInput {
  readonly item: PlannedDump;
  /** The run directory being written. */
  readonly runDir: string;
  readonly output: DumpOutput;
  /** Its last dump was small (SMALL_DUMP_BYTES): to a file at full speed, no map. */
  readonly small: boolean;
  readonly timeoutMs: number;
  readonly log: Logger;
  readonly how: { readonly onWait?: (wait: LockWait | undefined) => void; readonly onFile?: (tmp: string) => void; readonly onStreamed?: (bytes: number) => void };
  readonly signal?: AbortSignal;
  /** Called once the dump tool has finished and the file is on disk (its slot is free). */
  readonly written?: () => void;
}

async function dumpOne(input: DumpAttemptInput): Promise<Attempt> {
  const { item, output, small, timeoutMs, log, how, signal, written } = input;
  const { spec, site } = item;
  const { compression } = output;
  const startedAt = new Date();
  const rel = dumpPath(spec, site, compression);
  const file = join(input.runDir, rel);
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = tempNameFor(file);
  how.onFile?.(tmp);
  const applied: Compression = spec.compressible ? compression : 'none';
  const base: Omit<ManifestEntry, 'status' | 'durationMs'> = {
    kind: spec.kind,
    object: spec.object,
    database: spec.database,
    site,
    format: spec.format,
    compression: spec.compressible ? compression : 'internal',
    lockMode: spec.lockMode,
    serverVersion: item.session.versions.server,
    clientVersion: item.session.versions.client,
    startedAt: startedAt.toISOString(),
    ...(spec.details ? { details: spec.details } : {}),
    ...(spec.warnings?.length ? { warnings: spec.warnings } : {}),
  };
  let probe: InventoryProbe | undefined;
  let inventoryError: string | undefined;
  let sidecarFile: string | undefined; // removed again if the dump then fails
  let watch: DumpWatch | undefined;
  try {
    if (spec.inventory) probe = await spec.inventory(signal).catch((err: Error) => void (inventoryError = err.message));
    const compressor = spec.compressible ? output.compressor : undefined;
    const command = probe?.command ?? spec.command;
    const stages = compressor ? [command, compressor] : [command];
    // Checked while it streams when the kind can (the trailer), else by reading the file back.
    const check = spec.streamCheck?.({ sidecar: !small });
    let streamed = 0;
    const limit = output.maxRate && ((bytes: number) => output.maxRate!.take(bytes, signal));
    // The check may ask the relay to wait (mysql: reading the binlog position while the dump, blocked on its pipe, holds its locks).
    const pace = check?.hold ? async (bytes: number) => { await check.hold?.(); if (limit) await limit(bytes); } : limit;
    const tap = check && {
      after: 0,
      onData: (chunk: Buffer) => {
        streamed += chunk.length;
        how.onStreamed?.(streamed);
        check.update(chunk);
      },
      pace,
    };
    const options = { timeoutMs, signal, secrets: spec.secrets, fsync: output.fsync, tap, spawner: small ? output.spawner : undefined };
    watch = spec.watch?.((wait) => how.onWait?.(wait));
    let result: Awaited<ReturnType<typeof pipeToFile>>;
    try {
      result = await pipeToFile(stages, tmp, options);
    } finally {
      await watch?.stop();
    }
    const via = result.via;
    // A small dump went to a file at full speed: its slot waits out its share of dumps.max_rate.
    if (via === 'files' && pace) await pace(streamed);
    written?.();
    // After the slot is free: the inventory's reading overlaps the next dump.
    const inventory = probe ? await probe.read(startedAt, signal).catch((err: Error) => void (inventoryError = err.message)) : undefined;
    const inventoryWarning =
      inventoryError === undefined
        ? undefined
        : warning(WarningCodes.INVENTORY_MISSING, `${spec.kind} '${spec.database}': the server's inventory could not be read beside the dump (verify can load it, not compare it): ${inventoryError}`, { kind: spec.kind, database: spec.database ?? undefined, site });
    if (inventoryWarning) log.warn(inventoryWarning.message, { database: spec.database });
    if (check) check.finish(tmp, applied);
    else await spec.checkFile(tmp, applied, signal);
    // Before the dump's rename: a dump under its final name has its map beside it already.
    const side = check?.sidecar?.();
    const facts = await check?.entryFacts?.(signal);
    if (side) sidecarFile = file + side.suffix;
    const map = side ? writeSidecar(file + side.suffix, rel + side.suffix, side.data, output.fsync) : undefined;
    renameSync(tmp, file);
    // -v prints this line as it is: the facts an admin watching a run wants, not just the event.
    log.debug(`dumped ${spec.kind} ${spec.database ?? spec.object} (${site}): ${(result.bytes / 1048576).toFixed(1)} MiB, ${spec.lockMode ?? 'no lock mode'}, ${(result.durationMs / 1000).toFixed(1)} s`, { kind: spec.kind, database: spec.database, via, bytes: result.bytes, ms: result.durationMs, inventoryMs: inventory?.ms });
    // mariadb-dump --lock-tables holds the database's tables from its start to its exit.
    const lockHeldMs = spec.lockMode === 'lock-tables' ? result.stages[0]?.durationMs : undefined;
    const entry: ManifestEntry = {
      ...base,
      path: rel,
      bytes: result.bytes,
      sha256: result.sha256,
      ...(map ? { map } : {}),
      ...(facts?.binlog ? { binlog: facts.binlog } : {}),
      durationMs: Date.now() - startedAt.getTime(),
      status: 'ok',
      ...(lockHeldMs !== undefined ? { lockHeldMs } : {}),
      ...(inventory ? { inventory } : {}),
      ...(inventoryError !== undefined ? { inventoryError } : {}),
      ...(inventoryWarning ? { warnings: [...(spec.warnings ?? []), inventoryWarning] } : {}),
    };
    return { entry };
  } catch (err) {
    rmSync(tmp, { force: true });
    if (sidecarFile) rmSync(sidecarFile, { force: true });
    // Not one of our errors: a bug, reported as such (exit 70 with the stack in the log), not as "dump failed".
    if (!(err instanceof BackupError)) throw err;
    return failedAttempt(input, { ...base, durationMs: Date.now() - startedAt.getTime() }, err, watch?.verdict);
  } finally {
    await probe?.close().catch(() => undefined);
  }
}

/** A failed attempt's manifest entry, in the kind's words where it has them, and whether another attempt can succeed. */
function failedAttempt(input: DumpAttemptInput, base: Omit<ManifestEntry, 'status'>, e: BackupError, verdict: string | undefined): Attempt {
  const { spec } = input.item;
  const what = `${spec.kind} ${spec.database === null ? spec.object : `'${spec.database}'`}`;
  const stderrTail = e.context?.stderrTail as string | undefined;
  // The kind's reading of its tool's words: a lock wait we ended names the table, the holder and
  // the setting; a table that changed under the dump is worth a new attempt.
  const explained = input.signal?.aborted ? undefined : spec.explainFailure?.(stderrTail ?? e.message);
  const message = verdict ?? explained?.message ?? e.message;
  const retry = verdict === undefined ? explained?.retry : undefined;
  // One that can be retried is logged by dumpWithRetries, attempt by attempt.
  if (!input.signal?.aborted && retry === undefined) input.log.error(`${what} failed: ${message}`);
  const entry: ManifestEntry = {
    ...base,
    status: 'failed',
    error: {
      message,
      command: e.context?.command as string | undefined,
      exitCode: e.context?.exitCode as number | undefined,
      stderrTail,
    },
  };
  return { entry, ...(retry !== undefined ? { retry } : {}) };
}

/**
 * A dump's sidecar (StreamCheck.sidecar) as `file`, whole or not at all; made durable by the
 * run's syncfs before the manifest names it, or here with dumps.sync: file. Failing to write it
 * fails the dump, as failing to write the dump would (a full disk).
 */
function writeSidecar(file: string, rel: string, data: Buffer, fsync: boolean): NonNullable<ManifestEntry['map']> {
  try {
    writeFileAtomic(file, data, { sync: fsync });
  } catch (err) {
    throw new BackupError(`writing ${file}: ${(err as Error).message}`, ExitCode.DUMP_FAILED, { file });
  }
  return { path: rel, bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') };
}

/** Compressed bytes of each dump of the newest complete run (empty on a first run or an unreadable manifest). */
function previousSizes(previous: Manifest | undefined): Map<string, number> {
  return new Map((previous?.entries ?? []).filter((e) => e.bytes !== undefined).map((e) => [sizeKey(e.kind, e.database, e.object), e.bytes!]));
}

/** How long each dump of the newest complete run took (the display's time left). */
function previousTimes(previous: Manifest | undefined): Map<string, number> {
  return new Map((previous?.entries ?? []).filter((e) => e.status === 'ok').map((e) => [sizeKey(e.kind, e.database, e.object), e.durationMs]));
}

function sizeKey(kind: string, database: string | null, object: string): string {
  return `${kind}\0${database ?? `(${object})`}`;
}

/**
 * Longest-processing-time-first order, with last night's dump size as the duration estimate.
 * Databases without history (new ones, or the first run) go first, in plan order: one of them
 * may be large. The sort is stable, so without any history the plan order is kept.
 */
function largestFirst(items: readonly PlannedDump[], sizes: ReadonlyMap<string, number>): PlannedDump[] {
  const size = (i: PlannedDump): number => sizes.get(sizeKey(i.spec.kind, i.spec.database, i.spec.object)) ?? Infinity;
  return [...items].sort((a, b) => (size(a) === size(b) ? 0 : size(a) > size(b) ? -1 : 1));
}

/**
 * A database whose last dump was at most this big (compressed) is dumped to a file and then
 * compressed, both started by a Spawner instead of a fork of our process each (pipeToFile's `spawner`):
 * on a server of hundreds of small sites the two forks per database were most of our own time,
 * while writing a few MB out once more costs next to nothing. Larger ones, and any without a
 * previous size, stream through kernel pipes (pipeToFile).
 */
const SMALL_DUMP_BYTES = 1 << 20;

/** How every dump of a run is compressed: the setting and the compressor stage it gives. */
interface DumpOutput {
  /** Starts the stages of small dumps (see SMALL_DUMP_BYTES); none without bash. */
  readonly spawner: Spawner | undefined;
  readonly compression: Compression;
  readonly compressor: Command | undefined;
  /** fsync every file (dumps.sync: file) instead of one syncfs before the manifest. */
  readonly fsync: boolean;
  /** dumps.max_rate, shared by every dump of the run (undefined: no limit). */
  readonly maxRate?: RateLimit;
}

/** Why the run was cut short: our own SIGTERM handler, or the hook's time limit. */
function abortReason(signal: AbortSignal): BackupError {
  const reason = signal.reason as Error | undefined;
  if (reason instanceof BackupError) return reason;
  if (reason?.name === 'TimeoutError') return new BackupError('stopped: the dumps took longer than their time limit (hooks.timeout / --timeout)', ExitCode.DUMP_FAILED);
  return new InterruptedError('SIGTERM');
}
