import { EngineError, MissingDependencyError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import { cmd } from '../proc/command.js';
import { run } from '../proc/run.js';
import { whichSystem } from '../proc/which.js';
import { exitClasses } from '../proc/exit-status.js';

/**
 * The director's catalog as bconsole shows it. We never open the catalog database ourselves:
 * bconsole works the same over sqlite, MySQL and PostgreSQL catalogs, needs only the console
 * password the admin already has, and works from any host the Console resource allows.
 */

/** One row of `llist jobs`. */
export interface CatalogJob {
  readonly jobId: number;
  /** The Job resource's name (s1-ApisCP), not the unique Job column. */
  readonly name: string;
  readonly client: string;
  /** B backup, R restore, … */
  readonly type: string;
  /** F, I, D (backups) */
  readonly level: string;
  /** T ok, W ok with warnings, f fatal, E error, A canceled, R running, C created… */
  readonly status: string;
  /** Unix seconds the job ended (JobTDate), 0 while it has not. */
  readonly endedAt: number;
  readonly startTime: string;
  readonly files: number;
  readonly bytes: number;
  readonly errors: number;
}

export interface BconsoleOptions {
  readonly bconsole: string;
  readonly configFile: string;
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
}

export type Console = (commands: string) => Promise<string>;

/** A bconsole session per call (`-n`: no readline), commands on stdin, output as one text. */
export function bconsole(opts: BconsoleOptions): Console {
  const file = whichSystem(opts.bconsole);
  if (!file) throw new MissingDependencyError(opts.bconsole, 'bacula-console', 'bacula-console');
  return async (commands) => {
    const r = await run(cmd(file, ['-n', '-c', opts.configFile]), {
      input: commands.endsWith('\n') ? commands : commands + '\n',
      timeoutMs: opts.timeoutMs,
      signal: opts.signal,
      // 1: it could not connect or authenticate (after ~15 s of retries); its output says where.
      exitClass: exitClasses({ ok: [1] }),
      failureExitCode: ExitCode.ENGINE,
    });
    const out = r.stdout + r.stderr;
    if (r.exitCode !== 0 || (!/^1000 OK/m.test(out) && /authorization problem|Failed to connect|ERR=/i.test(out))) {
      // A wrong password and an unreachable director look the same: exit 1 after "Connecting to Director …".
      const why = firstLine(out, /ERR=|authoriz|Failed|Connecting to Director/) || `exit ${r.exitCode}`;
      throw new EngineError(`bconsole could not connect or log in to the director (${opts.configFile}; address or console password wrong?): ${why}`, 'bacula');
    }
    return out;
  };
}

function firstLine(text: string, re: RegExp): string {
  return text.split('\n').find((l) => re.test(l))?.trim() ?? text.trim().split('\n').slice(-1)[0] ?? '';
}

/**
 * `llist` output: blocks of `Key: value` lines separated by blank lines. A director with 1,000
 * clients lists ~180k jobs (5 M lines): plain string scanning, no regular expression per line.
 */
export function parseLlist(text: string, keep?: ReadonlySet<string>): Record<string, string>[] {
  const rows: Record<string, string>[] = [];
  let row: Record<string, string> = {};
  let start = 0;
  while (start <= text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    const colon = text.indexOf(':', start);
    if (colon > start && colon < end) {
      const key = text.slice(start, colon).trim();
      if (keep ? keep.has(key) || key === 'JobId' : /^[A-Za-z]+$/.test(key)) {
        // A new JobId starts a new record even without the blank line between.
        if (key === 'JobId' && 'JobId' in row) (rows.push(row), (row = {}));
        row[key] = text.slice(colon + 1, end).trim();
      }
    } else if (text.slice(start, end).trim() === '' && 'JobId' in row) {
      rows.push(row);
      row = {};
    }
    start = end + 1;
  }
  if ('JobId' in row) rows.push(row);
  return rows;
}

const num = (v: string | undefined): number => {
  const n = Number((v ?? '').replace(/,/g, ''));
  return Number.isFinite(n) ? n : 0;
};

/** The llist fields toJob reads. */
const JOB_KEYS: ReadonlySet<string> = new Set(['JobId', 'Name', 'ClientName', 'Type', 'Level', 'JobStatus', 'JobTDate', 'StartTime', 'JobFiles', 'JobBytes', 'JobErrors']);

export function toJob(r: Record<string, string>): CatalogJob {
  return {
    jobId: num(r.JobId),
    name: r.Name ?? '',
    client: r.ClientName ?? '',
    type: r.Type ?? '',
    level: r.Level ?? '',
    status: r.JobStatus ?? '',
    endedAt: num(r.JobTDate),
    startTime: r.StartTime ?? '',
    files: num(r.JobFiles),
    bytes: num(r.JobBytes),
    errors: num(r.JobErrors),
  };
}

/** Every backup job the catalog holds (pruned ones are gone: Job Retention bounds this). */
export async function listBackupJobs(con: Console): Promise<CatalogJob[]> {
  const out = await con('llist jobs jobtype=B');
  // Some listings print a job twice (seen with client= filters on 9.6.7): one record per JobId.
  const byId = new Map(parseLlist(out, JOB_KEYS).map(toJob).map((j) => [j.jobId, j] as const));
  return [...byId.values()].filter((j) => j.type === 'B' && j.jobId > 0);
}

/** The clients the director is configured for (`.clients`), whether or not they ever ran. */
export async function listClients(con: Console): Promise<string[]> {
  const out = await con('.clients');
  const lines = out.split('\n').map((l) => l.trim());
  const start = lines.findIndex((l) => l === '.clients');
  return lines.slice(start + 1).filter((l) => /^[A-Za-z0-9_.:-]+$/.test(l) && l !== 'You');
}

/**
 * Why a job failed, from its log: our hook's own lines first (it names the database and the
 * error), then Bacula's fatal errors. The "Bad response to RunBeforeNow" line that follows every
 * failed client RunScript says nothing new and is skipped.
 */
export function failureReason(joblog: string): string {
  const lines = [...joblog.matchAll(/(\S+) JobId \d+: ([^\n]*)/g)].map((m) => m[2]!.replace(/\s*\|?\s*$/, '').trim());
  const hookDetail = lines.find((l) => /^ClientBeforeJob: {3}\S/.test(l))?.replace(/^ClientBeforeJob:\s+/, '');
  const fatal = lines.filter((l) => /^Fatal error:/.test(l) && !/RunBeforeNow/.test(l)).map((l) => l.replace(/^Fatal error:\s*/, '').replace(/\.$/, ''));
  const error = lines.find((l) => /^Error:/.test(l) && !/^Error: Bacula /.test(l))?.replace(/^Error:\s*/, '');
  const parts = [fatal[0], hookDetail].filter(Boolean);
  if (parts.length) return parts.join(': ');
  return error ?? lines.find((l) => /Termination:/.test(l)) ?? 'no reason in the job log';
}

export async function jobFailureReason(con: Console, jobId: number): Promise<string> {
  return failureReason(await con(`list joblog jobid=${jobId}`));
}
