import { readManifestIfAny } from '../dumps/manifest-file.js';
import { statSync } from 'node:fs';
import type { LoadedConfig } from '../config/load.js';
import type { Manifest } from '../model/manifest.js';
import { latestRunId, listRuns } from '../dumps/retention.js';
import type { BackupPoint, Engine, EngineContext } from '../engine/types.js';
import { UsageError } from '../errors.js';
import { readPins } from '../job/pins.js';

/**
 * Step 1 of every restore: which backup. Either a local run in dumps.dir (databases only, no
 * fetch needed) or one of the engine's backups (fetched into staging).
 */
export type RestoreSource =
  | { readonly type: 'local'; readonly runId: string; readonly dir: string; readonly time: string }
  | { readonly type: 'engine'; readonly point: BackupPoint };

export interface LocalRun {
  readonly runId: string;
  readonly time: string;
  readonly status: 'complete' | 'failed' | 'unreadable';
  readonly databases: number;
  readonly bytes: number;
  readonly pinned: boolean;
  readonly latest: boolean;
}

/** `20261126T030512Z(-n)` → its ISO time. */
export function runTime(runId: string): string {
  const m = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z/.exec(runId);
  return m ? `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.000Z` : new Date(0).toISOString();
}

/** The local runs in dumps.dir, newest first, with what `list` shows of each. */
export function localRuns(loaded: LoadedConfig): LocalRun[] {
  const latest = latestRunId(loaded.paths.dumpsDir);
  const pins = new Set(readPinsSafe(loaded));
  return listRuns(loaded.paths.dumpsDir).map((r) => {
    const m = readManifest(r.dir);
    const entries = m?.entries ?? [];
    return {
      runId: r.runId,
      time: runTime(r.runId),
      status: r.status,
      databases: entries.filter((e) => e.object === 'database' && e.status === 'ok').length,
      bytes: entries.reduce((n, e) => n + (e.bytes ?? 0), 0),
      pinned: pins.has(r.runId),
      latest: r.runId === latest,
    };
  });
}

function readPinsSafe(loaded: LoadedConfig): string[] {
  try {
    return readPins(loaded).map((p) => p.runId);
  } catch {
    return [];
  }
}

export function readManifest(runDir: string): Manifest | undefined {
  return readManifestIfAny(runDir);
}

/**
 * A date as an admin types it: `2026-11-24` means up to the end of that day (local time),
 * `2026-11-24 03:00` or ISO 8601 up to that moment. Undefined when it is not a date.
 */
export function parseDateBound(text: string): number | undefined {
  const day = /^(\d{4})-(\d\d)-(\d\d)$/.exec(text);
  if (day) return new Date(Number(day[1]), Number(day[2]) - 1, Number(day[3]), 23, 59, 59, 999).getTime();
  if (!/^\d{4}-\d\d-\d\d[T ]\d\d:\d\d/.test(text)) return undefined;
  const t = Date.parse(text.replace(' ', 'T'));
  return Number.isNaN(t) ? undefined : t;
}

export interface ResolveOptions {
  readonly from?: string;
  /** Databases only: a local run may serve (no fetch). Files always come from the engine. */
  readonly allowLocal: boolean;
  /** Only local runs that hold what the restore needs (the database asked for). */
  readonly localFilter?: (runDir: string) => boolean;
  readonly client?: string;
}

/**
 * `--from` as a local run id, an engine backup id, or a date (the newest backup at or before it);
 * without `--from`, the newest local run that has what is asked for, else the newest backup.
 */
export async function resolveSource(loaded: LoadedConfig, engine: Engine, ctx: EngineContext, opts: ResolveOptions): Promise<RestoreSource> {
  const locals = opts.allowLocal && !opts.client ? listRuns(loaded.paths.dumpsDir).filter((r) => r.status === 'complete' && (opts.localFilter?.(r.dir) ?? true)) : [];
  const local = (runId: string, dir: string): RestoreSource => ({ type: 'local', runId, dir, time: runTime(runId) });
  let points: BackupPoint[] | undefined;
  const enginePoints = async (): Promise<BackupPoint[]> => (points ??= engine.list ? await engine.list(ctx, { client: opts.client }) : []);
  const from = opts.from;
  if (from === undefined) {
    if (locals[0]) return local(locals[0].runId, locals[0].dir);
    const newest = (await enginePoints())[0];
    if (newest) return { type: 'engine', point: newest };
    throw new UsageError(noBackups(engine, opts));
  }
  const run = locals.find((r) => r.runId === from);
  if (run) return local(run.runId, run.dir);
  const byId = (await enginePoints()).find((p) => p.id === from || (engine.name === 'restic' && from.length >= 8 && p.id.startsWith(from.slice(0, 8))));
  if (byId) return { type: 'engine', point: byId };
  const bound = parseDateBound(from);
  if (bound !== undefined) {
    const point = (await enginePoints()).find((p) => Date.parse(p.time) <= bound);
    if (point) return { type: 'engine', point };
    const old = locals.find((r) => Date.parse(runTime(r.runId)) <= bound);
    if (old) return local(old.runId, old.dir);
    throw new UsageError(`no backup at or before ${from}${engine.list ? ` (engine ${engine.name})` : ''}: \`apiscp-backup list\` shows what there is`);
  }
  const stale = listRuns(loaded.paths.dumpsDir).some((r) => r.runId === from && statSync(r.dir).isDirectory());
  throw new UsageError(
    stale ? `run ${from} is not a complete run, or does not have what you asked for` : `backup ${from} not found (neither a run in ${loaded.paths.dumpsDir} nor a ${engine.name} backup): \`apiscp-backup list\` shows them`,
  );
}

/** Stand-ins of unlistedNewest not yet named by their extraction. */
const unnamed = new WeakSet<BackupPoint>();

/**
 * Without --from, a restore of an engine's backup (never a local run) from an engine that picks
 * its newest backup itself as it extracts (restic `latest`): no listing first. The source's point
 * stands for "the newest" until the first fetch through `engine` (the engine, wrapped) extracts
 * and names it; from then on it is that backup, and every later fetch takes it by its id. Until
 * then its time is now (what guessRunPaths reads: the newest local run). `onNamed`: the tool has
 * said which backup it takes (the point is named), before its files have come.
 */
export function unlistedNewest(engine: Engine, client?: string, onNamed?: () => void): { source: RestoreSource & { type: 'engine' }; engine: Engine } | undefined {
  const { fetch, fetchNewest } = engine;
  if (!fetch || !fetchNewest) return undefined;
  const point: { -readonly [K in keyof BackupPoint]: BackupPoint[K] } = { engine: engine.name, id: 'latest', time: new Date().toISOString(), level: 'Snapshot', chain: 1, ...(client ? { client } : {}) };
  unnamed.add(point);
  const wrapped: Engine = {
    ...engine,
    async fetch(ctx, request) {
      if (!unnamed.has(point)) return fetch.call(engine, ctx, { ...request, point });
      const { point: _standIn, ...rest } = request;
      const name = (got: BackupPoint): void => {
        Object.assign(point, got);
        unnamed.delete(point);
      };
      const got = await fetchNewest.call(engine, ctx, { ...rest, ...(client ? { client } : {}), onNamed: (p) => (name(p), onNamed?.()) });
      if (!got) throw new UsageError(noBackups(engine, { allowLocal: false, client }));
      name(got);
    },
  };
  return { source: { type: 'engine', point }, engine: wrapped };
}

function noBackups(engine: Engine, opts: Pick<ResolveOptions, 'allowLocal' | 'client'>): string {
  if (engine.name === 'none') return 'no complete local run holds what you asked for, and engine none keeps no other backups';
  return `no ${engine.name} backup${opts.client ? ` of client ${opts.client}` : ''} found${opts.allowLocal ? ' and no local run holds what you asked for' : ''}`;
}

/** One line naming a source, for output and the restore journal. */
export function describeSource(source: RestoreSource): string {
  if (source.type === 'local') return sourceName(source);
  const p = source.point;
  if (unnamed.has(p)) return sourceName(source);
  return `${sourceName(source)} (${p.time.replace('T', ' ').replace(/\.\d+Z$/, ' UTC')}, ${p.level}, restore chain ${p.chain})`;
}

/** A source by its name only (`restic snapshot 1a2b3c4d`, `local run …`): the progress display's steps. */
export function sourceName(source: RestoreSource): string {
  if (source.type === 'local') return `local run ${source.runId}`;
  const p = source.point;
  const what = { restic: 'restic snapshot', borg: 'borg archive', duplicity: 'duplicity backup set', bacula: 'Bacula job', none: 'backup' }[p.engine];
  if (unnamed.has(p)) return `the newest ${what}${p.client ? ` of ${p.client}` : ''}`;
  return `${what} ${p.id}`;
}
