import type { LoadedConfig } from '../config/load.js';
import type { KindName, ServerTarget } from '../model/kind.js';
import { getEngine } from '../engine/index.js';
import type { EngineContext, EngineName } from '../engine/types.js';
import { RestoreError, UsageError } from '../errors.js';
import { takeLock } from '../job/backup-job.js';
import { allKinds } from '../kinds/index.js';
import type { Logger } from '../log.js';
import { accountsEntry, dumpFile, findDatabaseEntry, proofOfFailure, replaceable, restoreDatabase, TargetServers, type DbRestoreResult } from './database.js';
import { recordRestore } from './journal.js';
import { describeSource, readManifest, resolveSource } from './source.js';
import { openStaging, stageDumps, stageRun, type Staging } from './stage.js';

/**
 * `restore db NAME`: plan (which backup, which dump) → fetch only that dump and its users or
 * globals export into staging → compare (is the target empty?) → apply (load), under the run lock.
 */
export interface RestoreDbInput {
  readonly loaded: LoadedConfig;
  readonly log: Logger;
  readonly signal?: AbortSignal;
  readonly engine: EngineName;
  readonly name: string;
  readonly kind?: KindName;
  readonly site?: string;
  readonly from?: string;
  readonly into?: string;
  readonly force: boolean;
  readonly dryRun: boolean;
  /** --grants: with --into, grant on the new name what the accounts hold on the original now. */
  readonly grants?: boolean;
  /** --accounts backup|keep (default keep): see DbRestoreOptions. */
  readonly accounts?: 'keep' | 'backup';
  /** Bacula/restic/borg: another server's backup (a migration). */
  readonly fromClient?: string;
  /** Another server to load into (verification loads into a throwaway one). */
  readonly target?: ServerTarget;
  /** Each step as it begins: the terminal's progress display. */
  readonly onStep?: (text: string) => void;
  /** The engine's own progress while it fetches the dump, where the tool gives one: the same display. */
  readonly onProgress?: (text: string) => void;
}

export interface RestoreDbOutcome extends DbRestoreResult {
  readonly source: string;
  readonly runId: string;
}

export function restoreEngineContext(loaded: LoadedConfig, log: Logger, signal?: AbortSignal): EngineContext {
  return { loaded, log, signal, sources: [], excludes: [] };
}

export async function restoreDb(input: RestoreDbInput): Promise<RestoreDbOutcome> {
  const { loaded, log, signal } = input;
  if (input.into !== undefined && input.into === '') throw new UsageError('--into needs a database name');
  if (input.grants && (input.into === undefined || input.into === input.name)) throw new UsageError('--grants copies the original\'s grants to the --into name: it needs --into');
  if (input.accounts === 'backup' && input.into !== undefined && input.into !== input.name) throw new UsageError('--accounts backup makes the accounts on the original database the backup\'s: a restore --into changes no account (--grants copies grants to the new name)');
  const engine = getEngine(input.engine);
  const ctx = { ...restoreEngineContext(loaded, log, signal), ...(input.onProgress ? { onProgress: input.onProgress } : {}) };
  const what = `${input.kind ?? 'database'} '${input.name}'${input.into ? ` into '${input.into}'` : ''}`;
  const lock = await takeLock(input, `apiscp-backup restore db ${input.name}`);
  let staging: Staging | undefined;
  let from: string | undefined;
  let runId: string | undefined;
  try {
    input.onStep?.('finding the backup');
    const source = await resolveSource(loaded, engine, ctx, {
      from: input.from,
      allowLocal: true,
      client: input.fromClient,
      localFilter: (dir) => (readManifest(dir)?.entries ?? []).some((e) => e.object === 'database' && e.status === 'ok' && e.database === input.name && (!input.kind || e.kind === input.kind)),
    });
    from = describeSource(source);
    staging = source.type === 'engine' ? await openStaging(loaded) : undefined;
    const run = await stageRun(loaded, engine, ctx, source, staging);
    runId = run.runId;
    const entry = findDatabaseEntry(run, input.name, { kind: input.kind, site: input.site });
    const accounts = accountsEntry(run, entry.kind as KindName);
    const servers = new TargetServers(allKinds, { loaded, log, signal }, input.target);
    try {
      // Refuse (or find the server down) before fetching the dump: asked again right before the load.
      const session = await servers.get(entry.kind as KindName);
      await replaceable(session, entry.kind as KindName, input.into ?? entry.database!, input.force, signal);
      // The dump's map is read beside its sha256 check; used only once the check has passed.
      const readAhead = input.dryRun ? undefined : () => session.prefetch?.(dumpFile(run, entry), signal);
      input.onStep?.(`${source.type === 'engine' ? `fetching from ${from}` : 'checking'} the dump of ${entry.kind} '${entry.database}'`);
      await stageDumps(loaded, engine, ctx, source, staging, run, accounts ? [entry, accounts] : [entry], readAhead);
      const result = await restoreDatabase(loaded, log, servers, run, entry, { into: input.into, force: input.force, dryRun: input.dryRun, grants: input.grants, accounts: input.accounts, onStep: input.onStep }, signal);
      recordRestore(loaded, log, {
        command: 'restore db',
        what: `${result.kind} '${result.database}'${result.into !== result.database ? ` into '${result.into}'` : ''}`,
        from,
        runId,
        result: input.dryRun ? 'dry-run' : 'ok',
        safetyDumps: result.safetyDump ? [result.safetyDump] : [],
        accountsCreated: result.accountsCreated,
        ...(result.proof ? { comparisons: { [`${result.kind}:${result.into}`]: result.proof } } : {}),
      });
      return { ...result, source: from, runId };
    } finally {
      await servers.close();
    }
  } catch (err) {
    const refused = err instanceof RestoreError && /^refusing/.test(err.message);
    const proof = proofOfFailure(err);
    recordRestore(loaded, log, { command: 'restore db', what, from, runId, result: refused ? 'refused' : 'failed', detail: err instanceof Error ? err.message : String(err), ...(proof ? { comparisons: proof } : {}) });
    throw err;
  } finally {
    await staging?.dispose();
    await lock.release();
  }
}
