import type { VerifyResult } from './verify-run.js';

/** What a failed verification says (stderr under cron, the heartbeat's log tail): each failure named. */
export function verifySummary(result: VerifyResult, maxLines = 12): string {
  const bad = result.results.filter((r) => r.outcome !== 'ok');
  const head = `verify of run ${result.runId}: ${result.results.length - bad.length} of ${result.results.length} dump(s) verified, ${bad.filter((r) => r.outcome === 'failed').length} failed, ${bad.filter((r) => r.outcome === 'error').length} could not be checked`;
  const lines = bad.map((r) => `  ${r.outcome === 'failed' ? 'FAILED' : 'not checked'}: ${r.kind} ${r.site}/${r.database}: ${r.problems.join('; ')}`);
  const shown = lines.length > maxLines ? [...lines.slice(0, maxLines - 1), `  … and ${lines.length - maxLines + 1} more (see the log)`] : lines;
  return [head, ...shown].join('\n');
}
