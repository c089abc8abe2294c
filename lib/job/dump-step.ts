import type { LoadedConfig } from '../config/load.js';
import type { LockWait } from '../model/kind.js';
import { runPanelExports } from '../dumps/apnscp.js';
import { allKinds } from '../kinds/index.js';
import { dumpPlan, type DumpEvent, type DumpPlanInput } from '../dumps/run-dumps.js';
import type { CompletedRun } from '../dumps/run-directory.js';
import { runOwnerExports, type OwnerExportsOutcome } from '../dumps/owner-exports.js';
import { openPanel } from '../panel/cpcmd.js';
import type { DatabaseKind } from '../model/kind.js';
import type { Logger } from '../log.js';
import type { RunState } from '../report/run-state.js';
import { withPriority } from '../proc/priority.js';
import type { Warning } from '../warnings.js';
import { readPins } from './pins.js';
import { buildPlan, closeSessions } from '../plan/plan.js';
import { buildSiteLookup } from './site-lookup.js';

export interface DumpStepInput {
  readonly loaded: LoadedConfig;
  readonly log: Logger;
  readonly signal?: AbortSignal;
  readonly interactive: boolean;
  /** Databases done of total as dumps finish (the job's progress file). */
  readonly onDumpProgress?: (done: number, total: number, current: string) => void;
  /** A dump waits for a lock (undefined: no longer): the job's progress file. */
  readonly onLockWait?: (what: string, wait: LockWait | undefined) => void;
  /** Each dump's start and end: the terminal's progress display. */
  readonly onDump?: (event: DumpEvent) => void;
}

/** Every database kind we know (the registry is lib/kinds/index.ts). */
export const ALL_KINDS: readonly DatabaseKind[] = allKinds;

export interface DumpStepResult extends CompletedRun {
  /** Site owners' scheduled exports, run after ours (panel.owner_exports); undefined when not run. */
  readonly ownerExports?: OwnerExportsOutcome;
}

/**
 * The dumps of one run, native and/or the panel's backup_dbs.php as databases.method says; then,
 * for native dumps on a panel, the site owners' own scheduled exports (their problems are warnings).
 */
export async function dumpStep(input: DumpStepInput): Promise<DumpStepResult> {
  const result = await ourDumps(input);
  const { loaded, log, signal } = input;
  // apnscp/both already ran backup_dbs.php --force, which exports everything the owners' schedules would.
  if (loaded.config.databases.method !== 'native' || !loaded.config.panel.owner_exports || !openPanel(loaded.config, { log })) return result;
  return { ...result, ownerExports: await runOwnerExports(loaded, { log, signal }) };
}

async function ourDumps(input: DumpStepInput): Promise<CompletedRun> {
  const { loaded, log, signal } = input;
  const method = loaded.config.databases.method;
  const kinds = method === 'apnscp' ? [] : ALL_KINDS;
  const panelExport =
    method === 'native'
      ? undefined
      : async (s?: AbortSignal) => (await runPanelExports(loaded, { signal: s, log })).entry;
  const siteOf = method === 'apnscp' ? () => undefined : await buildSiteLookup(loaded, log, signal);
  // Our dump tools and compressors at the configured priority (they inherit it from us).
  return withPriority(loaded.config.priority, log, () =>
    planAndDump({
      loaded,
      log,
      signal,
      kinds,
      siteOf,
      panelExport,
      pinned: new Set(readPins(loaded).map((p) => p.runId)),
      onProgress: input.onDumpProgress,
      onDump: input.onDump,
      onLockWait: input.onLockWait,
    }),
  );
}

/** plan → dumps: the sessions the plan opened are closed here, whatever the dumps did. */
export async function planAndDump(input: Omit<DumpPlanInput, 'plan'> & { readonly kinds: readonly DatabaseKind[] }): Promise<CompletedRun> {
  const { kinds, ...rest } = input;
  const plan = await buildPlan({ loaded: input.loaded, log: input.log, kinds, siteOf: input.siteOf, signal: input.signal });
  try {
    return await dumpPlan({ ...rest, plan });
  } finally {
    await closeSessions(plan.sessions, input.log);
  }
}

/** The dumps part of the run state (status, per-database outcome). */
export function dumpsState(result: CompletedRun): NonNullable<RunState['dumps']> {
  const entries = result.manifest.entries;
  return {
    ok: entries.filter((e) => e.status === 'ok').length,
    failed: entries.filter((e) => e.status === 'failed').length,
    bytes: entries.reduce((n, e) => n + (e.bytes ?? 0), 0),
    databases: entries.map((e) => ({
      kind: e.kind,
      database: e.database,
      site: e.site,
      status: e.status,
      bytes: e.bytes,
      error: e.error?.message,
    })),
    ...(result.manifest.missing?.length ? { missing: result.manifest.missing.map((m) => ({ kind: m.kind, database: m.database, site: m.site, reason: m.reason })) } : {}),
  };
}

/**
 * Every warning of the dump run: the run's own (database missing, retry needed), each dump's
 * (events skipped) and the site owners' scheduled exports' (panel error block, empty export).
 */
export function dumpWarnings(result: DumpStepResult): Warning[] {
  return [...(result.manifest.warnings ?? []), ...result.manifest.entries.flatMap((e) => e.warnings ?? []), ...(result.ownerExports?.warnings ?? [])];
}

export function dumpProblems(result: CompletedRun): string[] {
  return result.manifest.entries
    .filter((e) => e.status === 'failed')
    .map((e) => `${e.kind} ${e.database === null ? e.object : `'${e.database}'`}: ${e.error?.message ?? 'failed'}`);
}
