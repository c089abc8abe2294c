import { planReplay, replay, shown, type ReplayPlan, type Stop } from '../../binlog/replay.js';
import { mysqlKind, type MysqlSession } from '../../kinds/mysql/index.js';
import { findKind } from '../../kinds/index.js';
import { RestoreError, UsageError } from '../../errors.js';
import { restoreDb } from '../../restore/restore-db.js';
import type { CommandContext } from '../context.js';
import { restoreBase } from './outcome.js';

/** `--at` as the admin types it: local time `YYYY-MM-DD HH:MM[:SS]`, or ISO 8601 with a zone. */
export function parseMoment(text: string): number {
  const m = /^(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d)(?::(\d\d))?$/.exec(text.trim());
  const ms = m ? new Date(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +(m[6] ?? 0)).getTime() : /[zZ]|[+-]\d\d:?\d\d$/.test(text) ? Date.parse(text) : NaN;
  if (!Number.isFinite(ms)) throw new UsageError(`--at: expected a moment like "2026-12-07 10:41:30" (local time), got '${text}'`);
  return ms;
}

export function parseEvent(text: string): Stop {
  const m = /^([A-Za-z0-9_.-]+\.\d{6,}):(\d+)$/.exec(text.trim());
  if (!m) throw new UsageError(`--before-event: expected FILE:POSITION as binlog events shows it (bin.000042:1234), got '${text}'`);
  return { file: m[1]!, position: Number(m[2]) };
}

export function planLines(p: ReplayPlan): string[] {
  const to = 'at' in p.stop ? shown(p.stop.at) : `just before ${p.stop.file}:${p.stop.position}`;
  return [
    `dump: run ${p.dump.runId}, ${p.dump.entry.path} (${shown(p.dump.at)}), binlog position ${p.dump.entry.binlog.file}:${p.dump.entry.binlog.position}${p.dump.entry.binlog.gtid ? ` (gtid ${p.dump.entry.binlog.gtid})` : ''}`,
    `binlog files: ${p.files.map((f) => f.name).join(', ')}`,
    `events: ${p.transactions} transaction(s) of '${p.database}' replayed up to ${to}`,
    `window: ${shown(p.window.from)} to ${shown(p.window.to)}`,
  ];
}

/** `restore db NAME --at T | --before-event FILE:POS`: the dump before it, then the database's binlog events up to it. */
export async function restoreAt(ctx: CommandContext, opts: Record<string, unknown>, name: string): Promise<number> {
  if (opts.at !== undefined && opts.beforeEvent !== undefined) throw new UsageError('--at and --before-event name the same thing: give one');
  if (opts.kind !== undefined && !findKind(String(opts.kind))?.pointInTime) throw new UsageError('--at: point-in-time restores are for MariaDB databases (PostgreSQL: docs/point-in-time.md)');
  if (opts.from !== undefined) throw new UsageError('--at picks the dump itself (the newest before the moment): leave out --from');
  const stop: Stop = opts.at !== undefined ? { at: parseMoment(String(opts.at)) } : parseEvent(String(opts.beforeEvent));
  const into = (opts.into as string | undefined) ?? name;
  const plan = await planReplay(ctx.loaded.paths.dumpsDir, name, into, stop, ctx.signal);
  if (opts.dryRun) {
    ctx.out(ctx.options.json ? JSON.stringify(plan, null, 2) : [`dry run: would restore mysql database '${into}' as it was at ${'at' in stop ? shown(stop.at) : `the event before ${stop.file}:${stop.position}`}`, ...planLines(plan).map((l) => `  ${l}`)].join('\n'));
    return 0;
  }
  const r = await restoreDb({
    ...restoreBase(ctx, opts),
    from: plan.dump.runId,
    name,
    kind: mysqlKind.name,
    site: opts.site as string | undefined,
    into: opts.into as string | undefined,
    force: Boolean(opts.force),
    grants: Boolean(opts.grants),
    accounts: opts.accounts as 'keep' | 'backup' | undefined,
    dryRun: false,
  });
  const session = (await mysqlKind.open({ loaded: ctx.loaded, log: ctx.log, signal: ctx.signal })) as MysqlSession | undefined;
  if (!session) throw new RestoreError('databases.mysql is disabled: cannot replay the binlog');
  try {
    await replay(plan, session, ctx.signal);
  } finally {
    await session.close();
  }
  const lines = [`restored mysql database '${r.into}' as it was at ${'at' in stop ? shown(stop.at) : `the event before ${stop.file}:${stop.position}`}`, ...planLines(plan).map((l) => `  ${l}`)];
  if (r.safetyDump) lines.push(`  safety dump of the previous content (kept; load it to undo): ${r.safetyDump}`);
  ctx.out(ctx.options.json ? JSON.stringify({ ...r, plan }, null, 2) : lines.join('\n'));
  return 0;
}
