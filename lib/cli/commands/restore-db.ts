import type { KindName } from '../../model/kind.js';
import { kindByName } from '../../kinds/index.js';
import { describeProof, type DbRestoreResult } from '../../restore/database.js';
import { restoreDb } from '../../restore/restore-db.js';
import type { CommandContext } from '../context.js';
import { withProgress } from '../progress/watch.js';
import { restoreBase } from './outcome.js';
import { unknownDatabase } from '../find-database.js';
import { UsageError } from '../../errors.js';
import type { ServerTarget } from '../../model/kind.js';

/** --host/--port/--socket: restore into another server than the one the config dumps. */
function serverTarget(opts: Record<string, unknown>): ServerTarget | undefined {
  if (opts.host === undefined && opts.port === undefined && opts.socket === undefined) return undefined;
  const port = opts.port === undefined ? undefined : Number(opts.port);
  if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) throw new UsageError(`--port: expected a TCP port, got '${String(opts.port)}'`);
  return { host: opts.host as string | undefined, port, socket: opts.socket as string | undefined };
}

/** `restore db NAME`: one database from a local run or a backup; see lib/restore/restore-db.ts. */
export default async function restoreDbCommand(ctx: CommandContext, opts: Record<string, unknown>, args: string[]): Promise<number> {
  // Point in time (issue 29): its own path, lib/cli/commands/binlog-restore.ts.
  if (opts.at !== undefined || opts.beforeEvent !== undefined) return (await import('./binlog-restore.js')).restoreAt(ctx, opts, args[0]!);
  const started = Date.now();
  const r = await withProgress(ctx, 'restore db', undefined, (watch) => restoreDb({
    ...restoreBase(ctx, opts),
    onStep: watch && ((text) => watch.step(text)),
    onProgress: watch && ((text) => watch.engine(text)),
    name: args[0]!,
    kind: opts.kind as KindName | undefined,
    site: opts.site as string | undefined,
    into: opts.into as string | undefined,
    force: Boolean(opts.force),
    grants: Boolean(opts.grants),
    accounts: opts.accounts as 'keep' | 'backup' | undefined,
    target: serverTarget(opts),
  })).catch((err: unknown) => {
    throw unknownDatabase(ctx.loaded, args[0]!, err);
  });
  if (ctx.options.json) {
    ctx.out(JSON.stringify(r, null, 2));
    return 0;
  }
  const target = `${r.kind} database '${r.into}'${opts.host !== undefined || opts.socket !== undefined || opts.port !== undefined ? ` on ${[opts.host, opts.port, opts.socket].filter((x) => x !== undefined).join(':')}` : ''}`;
  const from = fromRun(r.source, r.runId);
  if (r.dryRun) {
    const lines = [`dry run: would restore ${target} from ${from}${r.before === 'non-empty' ? ' (replacing its current content, after a safety dump)' : r.before === 'missing' ? ' (created)' : ''}`];
    lines.push(...accountReportLines(r, '  '));
    lines.push('  nothing was changed');
    ctx.out(lines.join('\n'));
    return 0;
  }
  // On a terminal the first line is the summary: what, from where, how long.
  const took = ctx.interactive ? ` in ${((Date.now() - started) / 1000).toFixed(1)} s` : '';
  const lines = [`restored ${target} from ${from}${r.before === 'non-empty' ? ' (replaced)' : ''}${took}`];
  if (r.proof) lines.push(`  ${describeProof(r.proof)}`);
  lines.push(...accountReportLines(r, '  '));
  if (r.safetyDump) lines.push(`  safety dump of the previous content (kept; load it to undo): ${r.safetyDump}`);
  ctx.out(lines.join('\n'));
  return 0;
}

/** "local run X" names its run already: ", run X" only for a backup. */
export function fromRun(source: string, runId: string | undefined): string {
  return runId === undefined || source.includes(runId) ? source : `${source}, run ${runId}`;
}

/** What a restore did (or, dry run, would do) to accounts and how they differ from the backup's, indented by `pad`. */
export function accountReportLines(r: DbRestoreResult, pad: string): string[] {
  const lines: string[] = [];
  const words = kindByName(r.kind).words;
  const accounts = words.accounts;
  const would = (done: string, planned: string): string => (r.dryRun ? planned : done);
  if (r.accountsCreated.length) lines.push(`${accounts} ${would('created', 'it would create')} from the backup's ${kindByName(r.kind).serverWide} export: ${r.accountsCreated.join(', ')}`);
  const a = r.accounts;
  if (a) {
    if (a.plugins.length) lines.push(`authentication plugins ${would('loaded for them', 'it would load for them')}: ${a.plugins.join(', ')}`);
    if (a.granted.length) lines.push(`${would('granted', 'it would grant')} on '${r.into}': ${a.granted.join(', ')}`);
    if (a.changed.length) lines.push(`${accounts} ${would('made', 'it would make')} the backup's (--accounts backup): ${a.changed.join(', ')}`);
    if (a.locked.length) lines.push(`${accounts} not in the backup, holding ${words.privileges} only on '${r.into}', ${would(words.lock.done, words.lock.planned)}: ${a.locked.join(', ')}`);
    for (const n of a.notes) lines.push(`note: ${n}`);
    if (a.drift.length) {
      const mode = r.accountsMode === 'backup' ? 'left as they are: --accounts backup does not change these' : 'left as they are; --accounts backup makes them the backup\'s';
      const left = r.dryRun ? `found now; ${r.accountsMode === 'backup' ? 'those not named above would be ' : 'they would be '}${mode}` : mode;
      lines.push(`${accounts} with privileges on '${r.into}' differ from the backup's (${left}):`);
      for (const d of a.drift) lines.push(`  ${d}`);
    } else if (r.into === r.database) lines.push(`${accounts} with privileges on '${r.into}': as in the backup${a.locked.length ? `, but for the ${words.lock.state} one(s) above` : ''}`);
    if (!a.created.length && !a.granted.length && !a.changed.length && !a.locked.length && !a.plugins.length) lines.push(`no ${words.account} ${would('was', 'would be')} created or changed`);
  }
  return lines.map((l) => pad + l);
}
