import type { BinlogPosition } from '../model/binlog.js';
import type { ManifestEntry } from '../model/manifest.js';
import { listRuns } from '../dumps/retention.js';
import { findKind } from '../kinds/index.js';
import { binlogDir, binlogSeq, localBinlogs, readGaps, readState, type FollowState, type Gap, type LocalBinlog } from './store.js';

/**
 * What point-in-time restores can reach on this server: the dumps with a binlog position, the
 * copies the follower keeps, its state. `status` shows it; `restore db --at` checks a moment
 * against it.
 */
export interface PositionedDump {
  readonly runId: string;
  readonly entry: ManifestEntry & { readonly binlog: BinlogPosition };
  /** The dump's start (ms): its snapshot is taken right after. */
  readonly at: number;
}

export interface Window {
  readonly dumps: readonly PositionedDump[];
  readonly files: readonly LocalBinlog[];
  readonly gaps: readonly Gap[];
  readonly state?: FollowState;
  /** Oldest reachable moment (ms): the oldest positioned dump after which the copies are continuous. */
  readonly from?: number;
  /** Newest reachable moment (ms): the newest copied event (or the follower's last look, when it is connected and caught up). */
  readonly to?: number;
  /** The first missing file after `from`'s dump, if any (then `to` is the moment before it). */
  readonly missing?: { readonly name: string; readonly after: number };
}

const FOLLOWER_STALE_MS = 2 * 60_000;

/** Positioned MariaDB dumps of `database` (every database when undefined), newest first. */
export function positionedDumps(dumpsDir: string, database?: string): PositionedDump[] {
  const out: PositionedDump[] = [];
  for (const run of listRuns(dumpsDir)) {
    if (run.status !== 'complete') continue;
    for (const e of run.manifest?.entries ?? []) {
      if (!findKind(e.kind)?.pointInTime || e.object !== 'database' || e.status !== 'ok' || !e.binlog || !e.path) continue;
      if (database !== undefined && e.database !== database) continue;
      out.push({ runId: run.runId, entry: e as PositionedDump['entry'], at: Date.parse(e.startedAt) });
    }
  }
  return out.sort((a, b) => b.at - a.at);
}

/** The follower is alive: it wrote its state recently and is connected. */
export function followerLive(state: FollowState | undefined, now = Date.now()): boolean {
  return !!state && state.connected && now - Date.parse(state.updatedAt) < FOLLOWER_STALE_MS;
}

/** The newest moment whose events are all copied. */
export function copiedUpTo(files: readonly LocalBinlog[], state: FollowState | undefined, now = Date.now()): number | undefined {
  const newest = files.at(-1);
  if (!newest) return undefined;
  // Caught up when it last looked: nothing was written between the newest event and that look.
  const caughtUp = followerLive(state, now) && state!.server && state!.server.file === newest.name && (state!.localBytes ?? -1) >= state!.server.position;
  return caughtUp ? Math.max(newest.mtimeMs, Date.parse(state!.updatedAt)) : newest.mtimeMs;
}

/** The first file missing from `seq` on, with the moment the copies before it end. */
export function firstMissing(files: readonly LocalBinlog[], seq: number): { name: string; after: number } | undefined {
  const first = files.find((f) => f.seq >= seq);
  if (!first || first.seq !== seq) return { name: `#${seq}`, after: NaN };
  let prev = first;
  for (const f of files.filter((x) => x.seq > seq)) {
    if (f.seq !== prev.seq + 1) return { name: f.name.replace(/\d+$/, (d) => String(prev.seq + 1).padStart(d.length, '0')), after: prev.mtimeMs };
    prev = f;
  }
  return undefined;
}

export function readWindow(dumpsDir: string, now = Date.now()): Window {
  const dir = binlogDir(dumpsDir);
  const files = localBinlogs(dir);
  const dumps = positionedDumps(dumpsDir);
  const state = readState(dir);
  const gaps = readGaps(dir);
  const base = { dumps, files, gaps, ...(state ? { state } : {}) };
  if (!files.length || !dumps.length) return base;
  const to = copiedUpTo(files, state, now);
  // Oldest first: the first dump whose chain to the newest copy is whole.
  let fallback: Window | undefined;
  for (const d of [...dumps].reverse()) {
    const seq = binlogSeq(d.entry.binlog.file);
    if (seq === undefined || !files.some((f) => f.seq === seq)) continue;
    const missing = firstMissing(files, seq);
    if (!missing) return { ...base, from: d.at, to, ...(fallback?.missing ? { missing: fallback.missing } : {}) };
    fallback ??= { ...base, from: d.at, to: missing.after, missing };
  }
  return fallback ?? base;
}
