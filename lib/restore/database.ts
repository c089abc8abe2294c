import { mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fsyncDir, tempNameFor } from '../atomic-file.js';
import { atLastResort } from '../last-resort.js';
import type { LoadedConfig } from '../config/load.js';
import { compressionSuffix, compressorCommand, resolveCompression, wantRsyncable } from '../dumps/compress.js';
import { encodeName, newRunId } from '../dumps/layout.js';
import type { ManifestEntry } from '../model/manifest.js';
import type { AccountReport, AccountsRequest, AccountWork, Compression, DatabaseKind, DatabaseState, DumpFile, KindName, RestoreSession, ServerTarget } from '../model/kind.js';
import { BackupError, RestoreError, UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import { pipeToFile } from '../proc/pipeline.js';
import { sizeIn } from '../report/status.js';
import type { StagedRun } from './stage.js';
import { compareWithInventory, describeComparison, type InventoryComparison } from '../model/inventory-compare.js';

/**
 * Step 4 for databases: load one dump into its server. A database that is not empty is only
 * replaced with `force`, and then only after a safety dump of what it holds now (kept, named in
 * the output). A load that fails leaves nothing half-restored: a new database is dropped again,
 * a replaced one gets its previous content back from the safety dump.
 */
export interface DbRestoreOptions {
  /** Name to load into (default: the dumped name). */
  readonly into?: string;
  readonly force: boolean;
  readonly dryRun: boolean;
  /** --grants: with --into, grant on the new name what the accounts hold on the original now. */
  readonly grants?: boolean;
  /** --accounts backup: the accounts with privileges on the database become the backup's (default 'keep'). */
  readonly accounts?: 'keep' | 'backup';
  /** Each step as it begins ('loading mysql 'shop''): the terminal's progress display. */
  readonly onStep?: (text: string) => void;
}

export interface DbRestoreResult {
  readonly kind: KindName;
  readonly database: string;
  readonly into: string;
  /** What was there before: 'missing', 'empty' or 'non-empty' (replaced). */
  readonly before: string;
  readonly accountsCreated: readonly string[];
  /** What the restore did to accounts and how they differ from the backup's. */
  readonly accounts?: AccountReport;
  /** --accounts as asked ('keep' when not). */
  readonly accountsMode?: 'keep' | 'backup';
  readonly safetyDump?: string;
  readonly dryRun: boolean;
  /** What the restored database was compared with before success was reported (not on a dry run). */
  readonly proof?: RestoreProof;
}

/**
 * The restored database against the inventory its server had at dump time (the comparison
 * verify makes), or why there was nothing to compare with (a run from before inventories).
 */
export type RestoreProof = ({ readonly compared: true } & InventoryComparison) | { readonly compared: false; readonly reason: string };

/** A load that went through but does not hold what the server had at dump time. */
class NotAsDumped extends RestoreError {
  constructor(readonly comparison: InventoryComparison) {
    super(`what it loaded differs from the backup (the inventory recorded at dump time): ${comparison.problems.join('; ')}`);
  }
}

/** Opens each kind's target server once per restore, and closes them all at the end. */
export class TargetServers {
  private readonly sessions = new Map<KindName, Promise<RestoreSession>>();
  constructor(
    private readonly kinds: readonly DatabaseKind[],
    private readonly ctx: { loaded: LoadedConfig; log: Logger; signal?: AbortSignal },
    private readonly target?: ServerTarget,
  ) {}

  get(kind: KindName): Promise<RestoreSession> {
    let s = this.sessions.get(kind);
    if (!s) {
      const k = this.kinds.find((x) => x.name === kind);
      if (!k) throw new RestoreError(`no database kind ${kind}`);
      s = k.openTarget(this.ctx, this.target).catch((err: unknown) => {
        const why = err instanceof Error ? err.message : String(err);
        throw new RestoreError(`cannot restore into ${kind}: the target server is not reachable: ${why}`, { kind }, { cause: err });
      });
      this.sessions.set(kind, s);
    }
    return s;
  }

  async close(): Promise<void> {
    for (const s of this.sessions.values()) await s.then((x) => x.close()).catch(() => undefined);
  }
}

/** The users (MySQL) or globals (PostgreSQL) export of the same run, if it has one. */
export function accountsEntry(run: StagedRun, kind: KindName): ManifestEntry | undefined {
  return run.manifest.entries.find((e) => e.kind === kind && (e.object === 'users' || e.object === 'globals') && e.status === 'ok' && e.path);
}

export function dumpFile(run: StagedRun, entry: ManifestEntry): DumpFile {
  return {
    path: join(run.dir, entry.path!),
    compression: entry.compression,
    format: entry.format === 'custom' ? 'custom' : 'sql',
    ...(entry.map ? { map: { path: join(run.dir, entry.map.path), sha256: entry.map.sha256 } } : {}),
    ...(entry.database !== undefined && entry.database !== null ? { database: entry.database } : {}),
    ...(entry.details ? { details: entry.details } : {}),
  };
}

export async function restoreDatabase(loaded: LoadedConfig, log: Logger, servers: TargetServers, run: StagedRun, entry: ManifestEntry, opts: DbRestoreOptions, signal?: AbortSignal): Promise<DbRestoreResult> {
  const kind = entry.kind as KindName;
  const database = entry.database!;
  const into = opts.into ?? database;
  const session = await servers.get(kind);
  const before = await replaceable(session, kind, into, opts.force, signal);
  const base = { kind, database, into, before, dryRun: opts.dryRun, accountsMode: opts.accounts ?? 'keep' };
  const accounts = accountsEntry(run, kind);
  const dump = dumpFile(run, entry);
  const exportFile = accounts && dumpFile(run, accounts);
  if (opts.dryRun) return { ...base, ...(await previewAccounts(session, { database, into, copyGrants: opts.grants ?? false, accounts: opts.accounts ?? 'keep', dryRun: true }, dump, exportFile, signal)) };
  let accountsCreated: string[] = [];
  let work: AccountWork | undefined;
  try {
    // Planned and checked (authentication plugins) before anything changes; applied around the load.
    if (session.prepareAccounts) work = await session.prepareAccounts({ database, into, copyGrants: opts.grants ?? false, accounts: opts.accounts ?? 'keep' }, dump, exportFile, signal);
    else accountsCreated = await session.ensureAccounts(database, dump, exportFile, signal);
  } catch (err) {
    // Reading the dump's accounts is the first look inside it: a damaged dump often fails here.
    const why = err instanceof Error ? err.message : String(err);
    throw new RestoreError(`${kind} restore of '${into}' failed before anything was loaded: ${why}; '${into}' was not touched${before === 'missing' ? ' (it was not created)' : ''}`, { kind, database: into }, { cause: err });
  }
  if (before === 'non-empty') opts.onStep?.(`safety dump of ${kind} '${into}' (its current content)`);
  const safetyDump = before === 'non-empty' ? await safetyDumpOf(loaded, session, into, signal) : undefined;
  if (safetyDump) {
    // The first look inside the safety dump too (PostgreSQL refuses a dump whose rows its own
    // functions check): what could not be loaded back is not dropped.
    try {
      await session.checkLoadable?.({ path: safetyDump.file, compression: safetyDump.compression, format: safetyDump.format }, signal);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new RestoreError(`${kind} restore of '${into}' failed: its safety dump ${safetyDump.file} could not be loaded back if the restore failed (${why}); '${into}' was not replaced`, { kind, database: into, safetyDump: safetyDump.file }, { cause: err });
    }
  }
  let report: AccountReport | undefined;
  let proof: RestoreProof | undefined;
  // From the drop until the database holds a whole content again, an exit that cannot wait (a
  // second signal, the first one's deadline) still says where the previous content is.
  const lastWords = safetyDump
    ? atLastResort(() => process.stderr.write(`apiscp-backup: interrupted while ${kind} database '${into}' was being replaced: it may be incomplete; its previous content is in the safety dump ${safetyDump.file} (kept: load it back by hand, docs/restore.md)\n`))
    : () => undefined;
  try {
    // Accounts first (a DEFINER must exist), then the objects, then the grants on them.
    await work?.beforeLoad();
    if (before !== 'missing') await session.dropDatabase(into, signal);
  } catch (err) {
    // Nothing was dropped: the database is as it was (the safety dump is kept all the same).
    const why = err instanceof Error ? err.message : String(err);
    lastWords();
    const undone = await undoAccounts(work);
    log.error(`restore of ${kind} '${into}' failed: ${why}`);
    throw new RestoreError(`${kind} restore of '${into}' failed before it was replaced: ${why}; '${into}' was not replaced${safetyDump ? ` (a safety dump of it is in ${safetyDump.file})` : ''}${undone.text}`, { kind, database: into, safetyDump: safetyDump?.file, accountsDropped: undone.dropped }, { cause: err });
  }
  try {
    await session.createDatabase(into, dump, signal);
    opts.onStep?.(`loading ${kind} '${into}'${entry.bytes !== undefined ? ` (dump ${sizeIn(entry.bytes, 1024)})` : ''}`);
    await session.load(into, dump, signal);
    opts.onStep?.(`comparing ${kind} '${into}' with the backup's inventory`);
    // Proven before the accounts' grants and changes (afterLoad), which the rollback would not undo.
    proof = await prove(session, entry, into, log, signal);
    report = await work?.afterLoad();
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    let state: string;
    try {
      await session.dropDatabase(into);
      if (safetyDump) {
        const safety: DumpFile = { path: safetyDump.file, compression: safetyDump.compression, format: safetyDump.format, ...(safetyDump.details ? { details: safetyDump.details } : {}) };
        await session.createDatabase(into, safety);
        await session.load(into, safety);
        state = `'${into}' holds its previous content again: loaded back from the safety dump ${safetyDump.file}, which is kept`;
      } else if (before === 'empty') {
        await session.createDatabase(into, dump);
        state = `'${into}' is empty again, as it was`;
      } else {
        state = `'${into}' was dropped again: nothing half-restored is left`;
      }
    } catch (again) {
      state = `and cleaning up failed too (${again instanceof Error ? again.message : String(again)}): '${into}' may be incomplete${safetyDump ? `; its previous content is in ${safetyDump.file}` : ''}`;
    }
    lastWords();
    const undone = await undoAccounts(work);
    log.error(`restore of ${kind} '${into}' failed: ${why}`);
    const comparison = err instanceof NotAsDumped ? { comparison: { compared: true, ...err.comparison } satisfies RestoreProof } : {};
    throw new RestoreError(`${kind} restore of '${into}' failed: ${why}; ${state}${undone.text}`, { kind, database: into, safetyDump: safetyDump?.file, accountsDropped: undone.dropped, ...comparison }, { cause: err });
  }
  lastWords();
  return { ...base, accountsCreated: report ? [...report.created] : accountsCreated, ...(report ? { accounts: report } : {}), safetyDump: safetyDump?.file, proof };
}

/** Compare what `into` holds now with the entry's dump-time inventory; throws NotAsDumped on a difference. */
async function prove(session: RestoreSession, entry: ManifestEntry, into: string, log: Logger, signal?: AbortSignal): Promise<RestoreProof> {
  if (!entry.inventory) {
    const reason = `the run has no inventory${entry.inventoryError ? ` (${entry.inventoryError})` : ' (a run from before inventories were recorded)'}`;
    log.warn(`restore of ${entry.kind} '${into}': not compared: ${reason}`);
    return { compared: false, reason };
  }
  let found;
  try {
    found = await session.inventory(into, signal);
  } catch (err) {
    if (signal?.aborted) throw err;
    // The load went through; only the reading failed: not proven wrong, so not undone.
    const reason = `reading what '${into}' holds failed: ${err instanceof Error ? err.message : String(err)}`;
    log.warn(`restore of ${entry.kind} '${into}': not compared: ${reason}`);
    return { compared: false, reason };
  }
  const comparison = compareWithInventory(entry.inventory, found);
  if (comparison.problems.length) throw new NotAsDumped(comparison);
  return { compared: true, ...comparison };
}

/** The comparison a failed restore of one database made, if that is what failed, keyed as restores.jsonl keys it. */
export function proofOfFailure(err: unknown): Record<string, RestoreProof> | undefined {
  const c = err instanceof BackupError ? err.context : undefined;
  return c?.comparison ? { [`${String(c.kind)}:${String(c.database)}`]: c.comparison as RestoreProof } : undefined;
}

/** The line a restore prints about its comparison. */
export function describeProof(proof: RestoreProof): string {
  if (!proof.compared) return `not compared: ${proof.reason}`;
  return `compared with the backup's inventory (recorded at dump time): as dumped: ${describeComparison(proof)}${proof.notes.length ? `; ${proof.notes.join('; ')}` : ''}`;
}

/** --dry-run: the account plan (what it would create, grant, change, lock) and the drift found now; changes nothing. */
async function previewAccounts(session: RestoreSession, req: AccountsRequest, dump: DumpFile, exportFile: DumpFile | undefined, signal?: AbortSignal): Promise<{ accountsCreated: readonly string[]; accounts?: AccountReport }> {
  const work = await session.prepareAccounts?.(req, dump, exportFile, signal);
  const report = await work?.preview?.();
  return report ? { accountsCreated: report.created, accounts: report } : { accountsCreated: [] };
}

/** Drop the accounts a failed restore created; what to add to its message. */
async function undoAccounts(work: AccountWork | undefined): Promise<{ dropped: string[]; text: string }> {
  try {
    const dropped = (await work?.undo()) ?? [];
    return { dropped, text: dropped.length ? `; the account(s) it had created were dropped again: ${dropped.join(', ')}` : '' };
  } catch (again) {
    return { dropped: [], text: `; dropping the account(s) it had created failed (${again instanceof Error ? again.message : String(again)}): ${work?.created.join(', ')} may be left` };
  }
}

/**
 * What `into` holds now, refusing a database that is not empty unless `force`. restore db asks
 * before it fetches the dump too, so a refusal costs no engine restore and no staging space.
 */
export async function replaceable(session: RestoreSession, kind: KindName, into: string, force: boolean, signal?: AbortSignal): Promise<DatabaseState> {
  const before = await session.databaseState(into, signal);
  if (before === 'non-empty' && !force) {
    throw new RestoreError(
      `refusing to replace ${kind} database '${into}': it is not empty. --force replaces it (after a safety dump of its current content); --into NEW restores beside it`,
      { kind, database: into },
    );
  }
  return before;
}

interface SafetyDump {
  readonly file: string;
  readonly compression: Compression | 'internal';
  readonly format: 'sql' | 'custom';
  /** What the dump planned recorded (MariaDB: the database's character set and collation, for loading it back). */
  readonly details?: Readonly<Record<string, unknown>>;
}

/**
 * What a database holds right now, before --force replaces it: `<dumps.dir>/safety/`, written and
 * verified like every dump (temp name, verify, rename). Kept until the admin removes it.
 */
async function safetyDumpOf(loaded: LoadedConfig, session: RestoreSession, database: string, signal?: AbortSignal): Promise<SafetyDump> {
  const spec = await session.planDatabase(database, signal);
  const compression = spec.compressible ? resolveCompression(loaded.config.dumps.compression) : 'none';
  const dir = join(loaded.paths.dumpsDir, 'safety');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, `${newRunId()}-${spec.kind}-${encodeName(database)}${spec.extension}${spec.compressible ? compressionSuffix(compression) : ''}`);
  const tmp = tempNameFor(file);
  const compressor = spec.compressible ? compressorCommand(compression, loaded.config.dumps.level, wantRsyncable(loaded.config.dumps.rsyncable, loaded.config.engine)) : undefined;
  try {
    await pipeToFile(compressor ? [spec.command, compressor] : [spec.command], tmp, { signal, secrets: spec.secrets });
    await spec.checkFile(tmp, compression, signal);
    renameSync(tmp, file);
    fsyncDir(dir);
  } catch (err) {
    rmSync(tmp, { force: true });
    const why = err instanceof BackupError || err instanceof Error ? err.message : String(err);
    throw new RestoreError(`the safety dump of '${database}' failed, so it was not replaced: ${why}`, { database }, { cause: err });
  }
  return { file, compression: spec.compressible ? compression : 'internal', format: spec.format, ...(spec.details ? { details: spec.details } : {}) };
}

/** The manifest entry of one database dump: by name, narrowed by kind and site when given. */
export function findDatabaseEntry(run: StagedRun, name: string, opts: { kind?: KindName; site?: string }): ManifestEntry {
  const all = run.manifest.entries.filter((e) => e.object === 'database' && e.status === 'ok' && e.path);
  const hits = all.filter((e) => e.database === name && (!opts.kind || e.kind === opts.kind) && (!opts.site || e.site === opts.site));
  if (hits.length === 1) return hits[0]!;
  if (hits.length > 1) throw new UsageError(`run ${run.runId} has '${name}' as ${hits.map((h) => h.kind).join(' and ')}: say which with --kind`);
  const names = all.map((e) => `${e.kind}:${e.database}`).slice(0, 10).join(', ');
  throw new UsageError(`unknown database '${name}'${opts.site ? ` of ${opts.site}` : ''}${opts.kind ? ` (${opts.kind})` : ''}: run ${run.runId} has no dump of it; it has: ${names || 'none'}`);
}
