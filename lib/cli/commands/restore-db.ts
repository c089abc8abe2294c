import type { KindName } from '../../model/kind.js';
import { restoreDb } from '../../restore/restore-db.js';
import type { CommandContext } from '../context.js';
import { restoreBase } from './outcome.js';

/** `restore db NAME`: one database from a local run or a backup; see lib/restore/restore-db.ts. */
export default async function restoreDbCommand(ctx: CommandContext, opts: Record<string, unknown>, args: string[]): Promise<number> {
  const r = await restoreDb({
    ...restoreBase(ctx, opts),
    name: args[0]!,
    kind: opts.kind as KindName | undefined,
    site: opts.site as string | undefined,
    into: opts.into as string | undefined,
    force: Boolean(opts.force),
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
  if (r.accountsCreated.length) lines.push(`  accounts created from the export first: ${r.accountsCreated.join(', ')}`);
  if (r.safetyDump) lines.push(`  safety dump of the previous content (kept; load it to undo): ${r.safetyDump}`);
  ctx.out(lines.join('\n'));
  return 0;
}
