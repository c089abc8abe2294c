import { restoreSite, type SiteRestoreOutcome } from '../../restore/site.js';
import { UsageError } from '../../errors.js';
import type { CommandContext } from '../context.js';
import { withProgress } from '../progress/watch.js';
import { restoreBase } from './outcome.js';
import { accountReportLines, fromRun } from './restore-db.js';
import { describeProof } from '../../restore/database.js';
import { sizeIn } from '../../report/status.js';

const SHOW = 20;

function list(label: string, items: readonly string[]): string[] {
  if (items.length === 0) return [];
  return [`    ${label.padEnd(8)} ${String(items.length).padStart(5)}  ${items.slice(0, SHOW).map((i) => JSON.stringify(i).slice(1, -1)).join(', ')}${items.length > SHOW ? `, … (${items.length - SHOW} more)` : ''}`];
}

const entries = (n: number): string => `${n} entr${n === 1 ? 'y' : 'ies'}`;

/**
 * What was looked at (and done), then, when something was restored, one closing line: the site,
 * the entries and bytes restored, the backup by name and its run, and (`tookMs`, on a terminal)
 * how long it took. A plan gives its time in the first line instead.
 */
export function describeOutcome(o: SiteRestoreOutcome, what: string, tookMs?: number): string {
  const took = tookMs !== undefined ? `${(tookMs / 1000).toFixed(1)} s` : undefined;
  const done = o.applied || o.target !== undefined;
  const lines = [`${what} ${o.site} from ${o.runId ? fromRun(o.source, o.runId) : o.source}${took && !done ? ` (${took})` : ''}:`];
  if (o.target) {
    lines.push(`  copied into ${o.target} (nothing in the live site was touched)`);
    lines.push(closingLine(o, took));
    return lines.join('\n');
  }
  for (const p of o.parts) {
    lines.push(`  ${p.part}: into ${p.into}${p.viaOverlay ? ' (the mounted overlay: removals become whiteouts)' : ''}`);
    // Not yet removed in a plan: extras the backup lacks, which --exact would remove.
    const n = list('missing', p.missing).concat(list('changed', p.changed), list(o.applied ? 'removed' : 'extra', p.removed));
    lines.push(...(n.length ? n : ['    identical to the backup']));
  }
  for (const d of o.databases) {
    const r = d.result;
    lines.push(`  ${d.kind} database '${d.database}': ${o.applied ? `restored${r?.before === 'non-empty' ? ` (replaced; safety dump ${r.safetyDump})` : ''}` : r?.before === 'missing' ? 'would be created' : 'would be replaced'}`);
    if (r?.proof) lines.push(`    ${describeProof(r.proof)}`);
    if (r) lines.push(...accountReportLines(r, '    '));
  }
  lines.push(o.applied ? closingLine(o, took) : '  nothing changed: --in-place puts it back (--exact also removes what the backup lacks)');
  return lines.join('\n');
}

/** The last line of a restore that changed something (or filled --target). */
function closingLine(o: SiteRestoreOutcome, took: string | undefined): string {
  const from = fromRun(o.sourceName ?? o.source, o.runId);
  const dbs = o.databases.length ? `${o.databases.length} database${o.databases.length === 1 ? '' : 's'}` : '';
  const tail = `from ${from}${took ? ` in ${took}` : ''}`;
  if (o.target) {
    const c = o.copied ?? { entries: 0, bytes: 0 };
    const what = [c.entries ? `${entries(c.entries)} (${sizeIn(c.bytes, 1024)})` : '', dbs ? `the dumps of ${dbs}` : ''].filter(Boolean).join(' and ');
    return `restored ${what || 'nothing'} of ${o.site} into ${o.target} ${tail}`;
  }
  const back = o.parts.reduce((n, p) => n + p.missing.length + p.changed.length, 0);
  const bytes = o.parts.reduce((n, p) => n + p.bytes, 0);
  const removed = o.parts.reduce((n, p) => n + p.removed.length, 0);
  const files = o.parts.length ? [`${entries(back)} put back (${sizeIn(bytes, 1024)})`, ...(removed ? [`${removed} removed`] : [])] : [];
  return `restored ${o.site}: ${[...files, ...(dbs ? [dbs] : [])].join(', ')} ${tail}${o.selinux ? '; SELinux contexts restored' : ''}`;
}

export async function restoreSiteCommand(ctx: CommandContext, opts: Record<string, unknown>, args: string[]): Promise<number> {
  if (opts.files && opts.databases) throw new UsageError('--files and --databases: give one of them, or neither for both');
  const started = Date.now();
  const o = await withProgress(ctx, 'restore site', undefined, (watch) => restoreSite({
    ...restoreBase(ctx, opts),
    site: args[0]!,
    files: !opts.databases,
    databases: !opts.files,
    inPlace: Boolean(opts.inPlace),
    exact: Boolean(opts.exact),
    target: opts.target as string | undefined,
    accounts: opts.accounts as 'keep' | 'backup' | undefined,
    grants: Boolean(opts.grants),
    onStep: watch && ((text) => watch.step(text)),
    onProgress: watch && ((text) => watch.engine(text)),
  }));
  ctx.out(ctx.options.json ? JSON.stringify(o, null, 2) : describeOutcome(o, 'restore site', ctx.interactive ? Date.now() - started : undefined));
  return 0;
}

export async function restoreFilesCommand(ctx: CommandContext, opts: Record<string, unknown>, args: string[]): Promise<number> {
  const [site, ...paths] = args;
  if (!opts.inPlace && !opts.target) throw new UsageError('restore files: say where: --target DIR (a copy) or --in-place (back into the site)');
  const started = Date.now();
  const o = await withProgress(ctx, 'restore files', undefined, (watch) => restoreSite({
    ...restoreBase(ctx, opts),
    onStep: watch && ((text) => watch.step(text)),
    onProgress: watch && ((text) => watch.engine(text)),
    site: site!,
    paths,
    files: true,
    databases: false,
    inPlace: Boolean(opts.inPlace),
    exact: false,
    target: opts.target as string | undefined,
  }));
  ctx.out(ctx.options.json ? JSON.stringify(o, null, 2) : describeOutcome(o, 'restore files of', ctx.interactive ? Date.now() - started : undefined));
  return 0;
}
