import { restoreSite, type SiteRestoreOutcome } from '../../restore/site.js';
import { UsageError } from '../../errors.js';
import type { CommandContext } from '../context.js';
import { withProgress } from '../progress/watch.js';
import { restoreBase } from './outcome.js';
import { accountReportLines, fromRun } from './restore-db.js';
import { describeProof } from '../../restore/database.js';

const SHOW = 20;

function list(label: string, items: readonly string[]): string[] {
  if (items.length === 0) return [];
  return [`    ${label.padEnd(8)} ${String(items.length).padStart(5)}  ${items.slice(0, SHOW).map((i) => JSON.stringify(i).slice(1, -1)).join(', ')}${items.length > SHOW ? `, … (${items.length - SHOW} more)` : ''}`];
}

/** `tookMs`: on a terminal, how long it took, in the first line (the summary). */
export function describeOutcome(o: SiteRestoreOutcome, what: string, tookMs?: number): string {
  const lines = [`${what} ${o.site} from ${o.runId ? fromRun(o.source, o.runId) : o.source}${tookMs !== undefined ? ` (${(tookMs / 1000).toFixed(1)} s)` : ''}:`];
  if (o.target) {
    lines.push(`  copied into ${o.target} (nothing in the live site was touched)`);
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
  lines.push(o.applied ? `  done${o.selinux ? '; SELinux contexts restored' : ''}` : '  nothing changed: --in-place puts it back (--exact also removes what the backup lacks)');
  return lines.join('\n');
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
