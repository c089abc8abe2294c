import type { EngineName } from '../../config/schema.js';
import type { JobOutcome } from '../../job/backup-job.js';
import { summaryFor } from '../../job/record.js';
import type { CommandContext } from '../context.js';
import { statsTable } from '../run-report.js';
import { sizeIn } from '../../report/status.js';

/**
 * Cron etiquette: nothing on success; on failure a short summary (cron mails it); a run with
 * warnings prints the same short summary and still exits 0, because an admin must see them
 * (events skipped, a database missing, the scope turned back on) but the backup exists.
 */
/** `also`: appended to the last line on a terminal (nightly: the verification's outcome). */
export function finish(ctx: CommandContext, outcome: JobOutcome, options: { stats?: boolean; also?: string } = {}): number {
  if (ctx.options.json) ctx.out(JSON.stringify(outcome.state, null, 2));
  // Asked for: printed under cron too.
  else if (options.stats) ctx.out(statsTable(ctx.loaded, outcome.state.runId));
  const warned = outcome.state.problems.length > 0 || (outcome.state.warnings?.length ?? 0) > 0;
  if (outcome.exitCode !== 0) {
    process.stderr.write(summaryFor(ctx.loaded, outcome.state) + '\n');
  } else if (warned && !ctx.interactive) {
    // Warnings only: the short summary (cron mails it), exit 0 (a warning must not fail a Bacula job).
    process.stderr.write(summaryFor(ctx.loaded, outcome.state) + '\n');
  } else if (ctx.interactive && !ctx.options.json) {
    const d = outcome.state.dumps;
    const b = outcome.state.backup;
    // The last line says where it all went: the run directory and the engine's own backup id.
    const made = b?.id ? `; ${outcome.state.engine} backup ${b.id}${b.bytes !== undefined ? ` (${sizeIn(b.bytes, outcome.state.engine === 'borg' || outcome.state.engine === 'bacula' ? 1000 : 1024)} added)` : ''}` : '';
    if (d) process.stderr.write(`${d.ok} dump(s) written to ${ctx.loaded.paths.dumpsDir}/${outcome.state.runId}${made}${options.also ? `; ${options.also}` : ''}\n`);
  }
  return outcome.exitCode;
}

export function engineOf(ctx: CommandContext, opts: Record<string, unknown>): EngineName {
  return (opts.engine as EngineName | undefined) ?? ctx.loaded.config.engine;
}

/** What every restore command (db, site, files) reads the same way: engine, which backup, --dry-run. */
export function restoreBase(ctx: CommandContext, opts: Record<string, unknown>) {
  return {
    loaded: ctx.loaded,
    log: ctx.log,
    signal: ctx.signal,
    engine: engineOf(ctx, opts),
    from: opts.from as string | undefined,
    fromClient: opts.fromClient as string | undefined,
    dryRun: Boolean(opts.dryRun),
  };
}

export function jobOf(opts: Record<string, unknown>): { name?: string; id?: string; client?: string } | undefined {
  const job = { name: opts.job as string | undefined, id: opts.jobid as string | undefined, client: opts.client as string | undefined };
  return job.name || job.id || job.client ? job : undefined;
}
