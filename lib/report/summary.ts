import { hostname } from 'node:os';
import { join } from 'node:path';
import { redact } from '../proc/command.js';
import type { RunState } from './run-state.js';
import { bytes } from './status.js';

export interface SummaryOptions {
  /** The JSON log with the full story (logging.file, resolved under the root). */
  readonly logFile?: string;
  /** dumps.dir (resolved): the run directory is `<dumpsDir>/<runId>`. */
  readonly dumpsDir?: string;
  readonly host?: string;
  /** Strings that must not appear (passwords a tool might have echoed into an error). */
  readonly secrets?: readonly string[];
  /** Hard cap on the number of lines (default 20): a cron mail is read on a phone. */
  readonly maxLines?: number;
}

const MAX_DATABASES = 8;
const MAX_PROBLEMS = 4;
const MAX_WARNINGS = 6;
const MAX_LINE = 200;

/**
 * The text cron mails when a run did not go well (failed, or finished with warnings): what failed
 * or needs a look and where to look, nothing more.
 * Each error is cut to its first line (no stack traces, no stderr dumps: those are in the log)
 * and scrubbed of anything that looks like a credential.
 */
export function failureSummary(state: RunState, opts: SummaryOptions = {}): string {
  const maxLines = opts.maxLines ?? 20;
  const clean = (text: string): string => oneLine(scrub(text, opts.secrets));
  const verdict = state.status === 'failed' ? 'FAILED' : state.status === 'warning' ? 'finished with warnings' : state.status === 'running' ? 'did not finish' : 'ok';
  // "run run" read like a typo; restic/borg's level "Snapshot" says nothing an admin needs.
  const what = state.trigger === 'run' ? 'run' : `${state.trigger} run`;
  const level = state.level && state.level !== 'Snapshot' ? ` ${state.level}` : '';
  const head: string[] = [`apiscp-backup ${verdict} on ${opts.host ?? hostname()}: ${what}, engine ${state.engine}${level}, started ${state.startedAt}`];

  const body: string[] = [];
  if (state.dumps) {
    body.push(`dumps: ${state.dumps.ok} ok, ${state.dumps.failed} failed (${bytes(state.dumps.bytes)} written)`);
    const failed = state.dumps.databases.filter((d) => d.status === 'failed');
    for (const d of failed.slice(0, MAX_DATABASES)) {
      const name = d.database ?? 'server-wide export';
      body.push(`  ${d.kind} ${d.site}/${name}: ${clean(d.error ?? 'failed (no message)')}`);
    }
    if (failed.length > MAX_DATABASES) body.push(`  … and ${failed.length - MAX_DATABASES} more failed dumps (see the log)`);
  }
  if (state.backup) {
    const detail = state.backup.detail ? `: ${clean(state.backup.detail)}` : '';
    body.push(`backup (${state.engine}): ${state.backup.status}${detail}`);
  }
  // Problems repeat dump errors already listed; show only those not already said above. A dump
  // problem is "<kind> <name>: <error>", so it is recognised by its error before any shortening.
  const said = body.join('\n');
  const dumpErrors = (state.dumps?.databases ?? []).flatMap((d) => (d.status === 'failed' && d.error ? [d.error] : []));
  const problems = state.problems
    .filter((p) => !dumpErrors.some((e) => p.endsWith(`: ${e}`)))
    .map(clean)
    .filter((p) => p && !said.includes(p));
  if (problems.length) {
    body.push('problems:');
    for (const p of problems.slice(0, MAX_PROBLEMS)) body.push(`  ${p}`);
    if (problems.length > MAX_PROBLEMS) body.push(`  … and ${problems.length - MAX_PROBLEMS} more (see the log)`);
  }

  const warnings = state.warnings ?? [];
  if (warnings.length) {
    // Only a made backup "exists": a run whose backup was skipped or failed says so above.
    const made = state.status !== 'failed' && state.backup?.status !== 'skipped' && state.backup?.status !== 'failed';
    body.push(made ? 'warnings (the backup exists; these need a look):' : 'warnings (these need a look too):');
    for (const w of warnings.slice(0, MAX_WARNINGS)) body.push(`  ${clean(w.message)}`);
    if (warnings.length > MAX_WARNINGS) body.push(`  … and ${warnings.length - MAX_WARNINGS} more (apiscp-backup status)`);
  }

  const tail: string[] = [];
  if (opts.logFile) tail.push(`log: ${opts.logFile}`);
  if (state.runId) tail.push(`run dir: ${opts.dumpsDir ? join(opts.dumpsDir, state.runId) : state.runId}`);

  // Keep the head and the pointers to the log; shorten the middle when it is too long.
  const room = Math.max(1, maxLines - head.length - tail.length);
  const middle = body.length > room ? [...body.slice(0, room - 1), `  … (${body.length - room + 1} more lines in the log)`] : body;
  return [...head, ...middle, ...tail].join('\n') + '\n';
}

function oneLine(text: string): string {
  const first = text.split('\n').map((l) => l.trim()).find(Boolean) ?? '';
  return first.length > MAX_LINE ? first.slice(0, MAX_LINE - 1) + '…' : first;
}

/**
 * Credentials sometimes reach error text: a password on a command line a tool echoes back, a URL
 * with user:password@, a `PASSPHRASE=` environment dump. Blank them before anything is mailed.
 */
export function scrub(text: string, secrets: readonly string[] = []): string {
  return redact(text, secrets)
    .replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^:/@\s]+:)[^@\s]+@/gi, '$1***@')
    .replace(/((?:--)?(?:password|passwd|passphrase|pass|secret|token)[A-Za-z_]*\s*[=:]\s*)("[^"]*"|'[^']*'|\S+)/gi, '$1***')
    .replace(/(\s-p)(?!\s)\S+/g, '$1***');
}
