import { join } from 'node:path';
import type { LoadedConfig } from '../config/load.js';
import type { EngineName } from '../config/schema.js';
import { getEngine } from '../engine/index.js';
import { BackupError } from '../errors.js';
import { expandBackupPaths } from '../plan/paths.js';
import { sizeIn } from '../report/status.js';
import { readManifest } from '../restore/source.js';
import type { CommandContext } from './context.js';
import { describePlan, engineTarget, viewPlan } from './plan-view.js';

/** `dump --dry-run` / `run --dry-run`: the plan, read-only (no lock, no run directory, no state). */
export async function printDryRun(ctx: CommandContext, engine: EngineName, verb: 'dump' | 'run'): Promise<number> {
  const view = await viewPlan(ctx.loaded, ctx.log, ctx.signal, { sites: true });
  const target = verb === 'dump' ? 'none (dump only: no engine backup)' : `${engineTarget(ctx.loaded, engine)}${await repositoryState(ctx, engine)}`;
  if (ctx.options.json) ctx.out(JSON.stringify({ dryRun: true, ...view, engine: verb === 'dump' ? null : engine, target }, null, 2));
  else ctx.out(describePlan(view, target, `${verb} --dry-run`).join('\n'));
  return 0;
}

/** Whether the repository a run would write exists (restic/borg), said after the target. */
async function repositoryState(ctx: CommandContext, name: EngineName): Promise<string> {
  const engine = getEngine(name);
  if (!engine.initialised) return '';
  try {
    const { sources, excludes } = await expandBackupPaths(ctx.loaded.paths);
    const known = await engine.initialised({ loaded: ctx.loaded, log: ctx.log, signal: ctx.signal, sources, excludes });
    return known === undefined ? '' : known ? ' (initialised)' : ' (MISSING: create it once with `apiscp-backup repo-init`)';
  } catch (err) {
    if (!(err instanceof BackupError)) throw err;
    return ` (cannot be checked: ${err.message})`;
  }
}

/** `--stats`: one row per dump of the run (database, site, size, lock mode, time), from its manifest. */
export function statsTable(loaded: LoadedConfig, runId: string | undefined): string {
  const m = runId ? readManifest(join(loaded.paths.dumpsDir, runId)) : undefined;
  if (!m) return `no run directory to report on${runId ? ` (${runId})` : ''}`;
  const rows = m.entries.map((e) => [e.kind, e.database ?? `(${e.object})`, e.site, e.status === 'ok' ? sizeIn(e.bytes ?? 0, 1024) : 'FAILED', e.lockMode ?? '-', `${(e.durationMs / 1000).toFixed(1)} s`]);
  const head = ['kind', 'database', 'site', 'size', 'lock mode', 'time'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((c, i) => (i === 3 || i === 5 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const total = m.entries.reduce((n, e) => n + (e.bytes ?? 0), 0);
  const seconds = (Date.parse(m.finishedAt) - Date.parse(m.startedAt)) / 1000;
  return [`run ${m.runId}: ${m.entries.length} dump(s), ${sizeIn(total, 1024)} in ${seconds.toFixed(1)} s`, line(head), ...rows.map(line)].join('\n');
}
