import { UsageError } from '../../errors.js';
import { refreshMetrics } from '../../job/record.js';
import { verifyRun } from '../../verify/verify-run.js';
import { verifySummary } from '../../verify/summary.js';
import type { CommandContext } from '../context.js';
import { withProgress } from '../progress/watch.js';

/** `verify [--run ID] [--sample N | --all]`: by hand it checks every database unless --sample says otherwise. */
export default async function verify(ctx: CommandContext, opts: Record<string, unknown>): Promise<number> {
  if (opts.sample !== undefined && opts.all) throw new UsageError('--sample and --all exclude each other');
  let sample: number | 'all' = 'all';
  if (opts.sample !== undefined) {
    sample = Number(opts.sample);
    if (!Number.isInteger(sample) || sample < 1) throw new UsageError(`--sample: expected a whole number of databases, got '${String(opts.sample)}'`);
  }
  const result = await withProgress(ctx, 'verify', undefined, (watch) => {
    watch?.phase('verify');
    // The dump being checked now (the block below the lines of those done), from verifyRun's own steps.
    // One dump at a time: the one started last is the one that ends next.
    let current = { what: '', site: '' };
    return verifyRun({
      loaded: ctx.loaded,
      log: ctx.log,
      signal: ctx.signal,
      runId: opts.run as string | undefined,
      sample,
      trigger: 'manual',
      onStart: watch
        ? (e, index, total) => {
            watch.dumps(index, total);
            current = { what: `${e.kind} ${e.database ?? `(${e.object})`}`, site: e.site };
            watch.dump({ type: 'start', ...current, expectedBytes: e.bytes, written: () => undefined }, e.object === 'database' ? 'loading' : 'hashing');
          }
        : undefined,
      onDatabase: ctx.interactive && !ctx.options.json
        ? (r) => {
            process.stderr.write(`${r.outcome === 'ok' ? 'ok' : r.outcome === 'failed' ? 'FAILED' : 'not checked'}  ${r.kind} ${r.site}/${r.database}${r.problems.length ? `: ${r.problems.join('; ')}` : ''} (${r.seconds}s)\n`);
            watch?.dump({ type: 'end', ...current, status: r.outcome === 'failed' ? 'failed' : 'ok', durationMs: (r.seconds ?? 0) * 1000 });
          }
        : undefined,
    });
  });
  refreshMetrics(ctx.loaded, ctx.log);
  if (ctx.options.json) ctx.out(JSON.stringify({ runId: result.runId, ok: result.ok, results: result.results }, null, 2));
  if (!result.ok) process.stderr.write(verifySummary(result) + '\n');
  // On a terminal the run ends with its one-line verdict (the per-database lines came above).
  else if (ctx.interactive && !ctx.options.json) process.stderr.write(verifySummary(result).split('\n')[0] + '\n');
  else if (result.results.filter((r) => r.database && !r.database.startsWith('(')).length === 0) process.stderr.write(`verify: run ${result.runId} has no database dumps; only the server-wide exports were checked\n`);
  return result.exitCode;
}
