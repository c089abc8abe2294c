import type { EngineName } from '../config/schema.js';
import { listRuns } from '../dumps/retention.js';
import { getEngine } from '../engine/index.js';
import type { BackupPoint } from '../engine/types.js';
import { BackupError, UsageError } from '../errors.js';
import { databaseKey, readVerifyState, verifyStateFile } from '../model/verify-state.js';
import { readRunState } from '../report/state-file.js';
import { sizeIn } from '../report/status.js';
import { restoreEngineContext } from '../restore/restore-db.js';
import { readManifest, runTime } from '../restore/source.js';
import type { CommandContext } from './context.js';

/** `list RUN`: the databases of one run (site, kind, size, lock mode, verified or not, binlog position) and the engine backup that holds it. */
export async function listRun(ctx: CommandContext, engineName: EngineName, runId: string): Promise<number> {
  const { loaded } = ctx;
  const runs = listRuns(loaded.paths.dumpsDir);
  const run = runs.find((r) => r.runId === runId);
  if (!run) throw new UsageError(`no run ${runId} in ${loaded.paths.dumpsDir}: \`apiscp-backup list\` shows the runs`);
  const m = readManifest(run.dir);
  if (!m) throw new UsageError(`run ${runId} has no readable manifest.json (status ${run.status})`);
  const verified = readVerifyState(verifyStateFile(loaded.paths.stateDir))?.databases ?? {};
  const rows = m.entries.map((e) => {
    const v = e.database === null ? undefined : verified[databaseKey(e.kind, e.database)];
    const check = e.object !== 'database' ? '' : !v ? 'not verified' : v.runId === runId ? (v.outcome === 'ok' ? 'verified' : `verify ${v.outcome.toUpperCase()}`) : v.lastVerifiedAt ? `verified in run ${v.runId}` : 'not verified';
    return { site: e.site, kind: e.kind, database: e.database ?? `(${e.object})`, bytes: e.bytes, size: e.status === 'ok' ? sizeIn(e.bytes ?? 0, 1024) : 'FAILED', lockMode: e.lockMode ?? '-', verified: check, status: e.status, binlog: e.binlog ? `${e.binlog.file}:${e.binlog.position}` : '' };
  });
  const backup = await backupOf(ctx, engineName, runId, m.finishedAt, runs.map((r) => r.runId));
  if (ctx.options.json) {
    ctx.out(JSON.stringify({ runId, status: run.status, startedAt: m.startedAt, finishedAt: m.finishedAt, dir: run.dir, databases: rows, backup }, null, 2));
    return 0;
  }
  // The binlog position a point-in-time restore replays from (MariaDB with log_bin on only).
  const withBinlog = rows.some((r) => r.binlog !== '');
  const head = ['site', 'kind', 'database', 'size', 'lock mode', 'verified', ...(withBinlog ? ['binlog'] : [])];
  const cells = rows.map((r) => [r.site, r.kind, r.database, r.size, r.lockMode, r.verified, ...(withBinlog ? [r.binlog] : [])]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]): string => '  ' + c.map((x, i) => (i === 3 ? x.padStart(widths[i]!) : x.padEnd(widths[i]!))).join('  ').trimEnd();
  const dbs = m.entries.filter((e) => e.object === 'database' && e.status === 'ok').length;
  ctx.out(
    [
      `run ${runId} (${run.status}), ${m.startedAt} to ${m.finishedAt}: ${dbs} database(s), ${sizeIn(m.entries.reduce((n, e) => n + (e.bytes ?? 0), 0), 1024)} in ${run.dir}`,
      line(head),
      ...cells.map(line),
      `engine backup: ${backup.text}`,
    ].join('\n'),
  );
  return 0;
}

/**
 * Which engine backup holds the run: status.json names it for the last run; otherwise the first
 * backup the engine made after the run finished and before the next run (what a job does).
 */
async function backupOf(ctx: CommandContext, engineName: EngineName, runId: string, finishedAt: string, runIds: string[]): Promise<{ id?: string; text: string }> {
  const state = readRunState(ctx.loaded.paths.statusFile);
  if (state?.runId === runId && state.backup?.id) return { id: state.backup.id, text: `${state.engine} backup ${state.backup.id} (the job that dumped it)` };
  const engine = getEngine(engineName);
  if (!engine.list) return { text: engineName === 'none' ? 'none (engine none: the run directory is the backup; your own software picks it up)' : `engine ${engineName} keeps no list of its own` };
  let points: BackupPoint[];
  try {
    const ectx = restoreEngineContext(ctx.loaded, ctx.log, ctx.signal);
    await engine.check(ectx);
    points = await engine.list(ectx);
  } catch (err) {
    if (!(err instanceof BackupError)) throw err;
    return { text: `cannot ask ${engineName}: ${err.message}` };
  }
  const next = runIds.filter((r) => r > runId).sort()[0];
  const nextStart = next ? Date.parse(runTime(next)) : Infinity;
  const after = points.filter((p) => Date.parse(p.time) >= Date.parse(finishedAt) - 1000 && Date.parse(p.time) < nextStart).sort((a, b) => Date.parse(a.time) - Date.parse(b.time))[0];
  return after ? { id: after.id, text: `${engineName} backup ${after.id} at ${after.time}${after.name ? ` (job ${after.name})` : ''} (the first after the run)` } : { text: `none of ${engineName}'s backups was made after this run (dumps only, or not backed up yet)` };
}
