import type { KindName } from '../../model/kind.js';
import type { DbRestoreResult } from '../../restore/database.js';
import { restoreDb } from '../../restore/restore-db.js';
import type { CommandContext } from '../context.js';
import { restoreBase } from './outcome.js';

/** `restore db NAME`: one database from a local run or a backup; see lib/restore/restore-db.ts. */
export default async function restoreDbCommand(ctx: CommandContext, opts: Record<string, unknown>, args: string[]): Promise<number> {
  // Point in time (issue 29): its own path, lib/cli/commands/binlog-restore.ts.
  if (opts.at !== undefined || opts.beforeEvent !== undefined) return (await import('./binlog-restore.js')).restoreAt(ctx, opts, args[0]!);
  const r = await restoreDb({
    ...restoreBase(ctx, opts),
    name: args[0]!,
    kind: opts.kind as KindName | undefined,
    site: opts.site as string | undefined,
    into: opts.into as string | undefined,
    force: Boolean(opts.force),
    grants: Boolean(opts.grants),
    accounts: opts.accounts as 'keep' | 'backup' | undefined,
  });
  if (ctx.options.json) {
    ctx.out(JSON.stringify(r, null, 2));
    return 0;
  }
  const target = `${r.kind} database '${r.into}'`;
  if (r.dryRun) {
    ctx.out(`dry run: would restore ${target} from ${r.source}, run ${r.runId}${r.before === 'non-empty' ? ' (replacing its current content, after a safety dump)' : r.before === 'missing' ? ' (created)' : ''}`);
    return 0;
  }
  const lines = [`restored ${target} from ${r.source}, run ${r.runId}${r.before === 'non-empty' ? ' (replaced)' : ''}`];
  lines.push(...accountReportLines(r, '  '));
  if (r.safetyDump) lines.push(`  safety dump of the previous content (kept; load it to undo): ${r.safetyDump}`);
  ctx.out(lines.join('\n'));
  return 0;
}

/** What a restore did to accounts and how they differ from the backup's, indented by `pad`. */
export function accountReportLines(r: DbRestoreResult, pad: string): string[] {
  const lines: string[] = [];
  if (r.accountsCreated.length) lines.push(`accounts created from the backup's users export: ${r.accountsCreated.join(', ')}`);
  const a = r.accounts;
  if (a) {
    if (a.plugins.length) lines.push(`authentication plugins loaded for them: ${a.plugins.join(', ')}`);
    if (a.granted.length) lines.push(`granted on '${r.into}': ${a.granted.join(', ')}`);
    if (a.changed.length) lines.push(`accounts made the backup's (--accounts backup): ${a.changed.join(', ')}`);
    if (a.locked.length) lines.push(`accounts not in the backup, holding grants only on '${r.into}', locked: ${a.locked.join(', ')}`);
    for (const n of a.notes) lines.push(`note: ${n}`);
    if (a.drift.length) {
      lines.push(`accounts with privileges on '${r.into}' differ from the backup's (left as they are; --accounts backup makes them the backup's):`);
      for (const d of a.drift) lines.push(`  ${d}`);
    } else if (r.into === r.database) lines.push(`accounts with privileges on '${r.into}': as in the backup`);
    if (!a.created.length && !a.granted.length && !a.changed.length && !a.locked.length && !a.plugins.length) lines.push('no account was created or changed');
  }
  return lines.map((l) => pad + l);
}
