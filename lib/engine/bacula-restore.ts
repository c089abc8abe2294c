import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LoadedConfig } from '../config/load.js';
import { EngineError, MissingDependencyError, RestoreError } from '../errors.js';
import { cmd } from '../proc/command.js';
import { run } from '../proc/run.js';
import { whichSystem } from '../proc/which.js';
import { requestedPaths, type BackupLevel, type BackupPoint, type EngineContext, type FetchRequest, type ListOptions } from './types.js';

/**
 * Bacula's list and restore go through the director, with bconsole (a Console with access to
 * this client's jobs: docs/restore.md). bconsole exits 0 whatever happened, so every answer
 * is read: "Job queued. JobId=N", then `wait jobid=N` for the JobStatus.
 */

async function bconsole(ctx: EngineContext, commands: readonly string[]): Promise<string> {
  const b = ctx.loaded.config.bacula;
  const bin = whichSystem(b.bconsole);
  if (!bin) throw new MissingDependencyError(b.bconsole, 'bacula-console', 'bacula-console');
  const r = await run(cmd(bin, ['-n', '-c', b.bconsole_config]), { input: commands.join('\n') + '\nquit\n', signal: ctx.signal, timeoutMs: 24 * 3600_000 });
  const out = r.stdout + r.stderr;
  if (/Director authorization problem|Authorization failed|Failed to connect|ERR=Connection refused/i.test(out)) {
    throw new EngineError(`bconsole cannot talk to the director (${b.bconsole_config}): ${out.trim().split('\n').slice(-2).join(' / ')}`, 'bacula');
  }
  return out;
}

/** Bacula quotes: "…" with no escapes; a name holding `"` or a newline cannot be selected. */
function q(value: string): string {
  if (/["\n\r]/.test(value)) throw new EngineError(`Bacula's restore cannot select a name holding a double quote or a line break: ${JSON.stringify(value)}`, 'bacula');
  return `"${value}"`;
}

const LEVELS: Record<string, BackupLevel> = { F: 'Full', I: 'Incremental', D: 'Differential' };

/** `llist jobs …` blocks of `Key: value` lines (9.6.7 prints each job twice: kept once). */
export function parseLlistJobs(text: string): Record<string, string>[] {
  const jobs = new Map<string, Record<string, string>>();
  let cur: Record<string, string> | undefined;
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z]+):\s?(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === 'JobId') {
      cur = {};
      jobs.set(m[2]!.trim(), cur);
    }
    if (cur) cur[m[1]!] = m[2]!.trim();
  }
  return [...jobs.values()];
}

/** Our job's good backups (JobStatus T, or W: with warnings), each with its restore chain. */
export async function baculaList(ctx: EngineContext, options?: ListOptions): Promise<BackupPoint[]> {
  const b = ctx.loaded.config.bacula;
  const client = options?.client ?? b.client;
  // Another client's job may have another name (the add-in names them <client>-Backup).
  const listed = await bconsole(ctx, [`llist jobs client=${q(client)}${options?.client ? '' : ` job=${q(b.job)}`}`]);
  const jobs = parseLlistJobs(listed).filter((j) => j.Type === 'B' && (j.JobStatus === 'T' || j.JobStatus === 'W'));
  if (jobs.length === 0) return [];
  // The JobIds a restore of each point reads: Full + newest Differential + Incrementals since.
  const chains = await bconsole(ctx, jobs.map((j) => `.bvfs_get_jobids jobid=${j.JobId}`));
  const byJob = new Map<string, string[]>();
  let current: string | undefined;
  for (const line of chains.split('\n')) {
    const ask = /^\.bvfs_get_jobids jobid=(\d+)/.exec(line.trim());
    if (ask) current = ask[1];
    else if (current && /^\d+(,\d+)*$/.test(line.trim())) byJob.set(current, line.trim().split(','));
  }
  return jobs
    .map((j) => {
      const ids = byJob.get(j.JobId!) ?? [j.JobId!];
      return {
        engine: 'bacula' as const,
        id: j.JobId!,
        time: new Date((j.StartTime ?? j.SchedTime ?? '').replace(' ', 'T')).toISOString(),
        level: LEVELS[j.Level ?? ''] ?? 'Incremental',
        chain: ids.length,
        chainIds: ids,
        status: j.JobStatus,
        bytes: j.JobBytes === undefined ? undefined : Number(j.JobBytes),
        files: j.JobFiles === undefined ? undefined : Number(j.JobFiles),
        client: j.ClientName ?? client,
        ...(j.Name ? { name: j.Name } : {}),
      };
    })
    .sort((a, b2) => Number(b2.id) - Number(a.id));
}

/**
 * Where a path sits in the catalog. The ApisCP add-in's FileSet `Client-Layer` strips the first
 * `bacula.strip_path` components of site paths (strippath=2), so /home/virtual/site2/shadow is
 * catalogued (and restored) as /site2/shadow. Other paths (dumps.dir) are not stripped.
 */
export function catalogPath(loaded: LoadedConfig, path: string): string {
  const n = loaded.config.bacula.strip_path;
  const home = loaded.paths.home;
  if (n === 0 || !(path === home || path.startsWith(home + '/'))) return path;
  return '/' + path.split('/').filter(Boolean).slice(n).join('/');
}

/** Only `paths` from the job chain of `point`, marked in the restore tree; onto this client. */
export async function baculaFetch(ctx: EngineContext, request: FetchRequest): Promise<void> {
  const b = ctx.loaded.config.bacula;
  const { point, into } = request;
  const ids = (point.chainIds ?? [point.id]).join(',');
  const lines = [
    `restore jobid=${ids} client=${q(point.client ?? b.client)} restoreclient=${q(b.client)} where=${q(into)}${b.restore_job ? ` restorejob=${q(b.restore_job)}` : ''}`,
  ];
  // Every path marked in one restore job. An optional path the catalog lacks fails its `cd`
  // (bconsole stays in the previous directory), so optional paths come last, after the required
  // ones whose directories they share (dumps.dir), where their names mark nothing else.
  const paths = requestedPaths(request);
  const selected = paths.map((p) => catalogPath(ctx.loaded, p));
  for (const p of selected) lines.push(`cd ${q(dirname(p) === '/' ? '/' : dirname(p) + '/')}`, `mark ${q(p.slice(p.lastIndexOf('/') + 1))}`);
  lines.push('done', 'yes');
  const out = await bconsole(ctx, lines);
  const queued = /Job queued\. JobId=(\d+)/.exec(out);
  if (!queued) {
    const why = /No files selected to be restored|No Full backup before|No JobIds found|is not a valid|not found/i.exec(out)?.[0] ?? out.trim().split('\n').slice(-3).join(' / ');
    throw new EngineError(`Bacula restore from job ${point.id} was not started: ${why}`, 'bacula', { jobIds: ids });
  }
  const jobId = queued[1]!;
  const watching = ctx.onProgress ? watchRestoreJob(ctx, ctx.onProgress, jobId) : undefined;
  let waited: string;
  try {
    waited = await bconsole(ctx, [`wait jobid=${jobId}`, `llist jobid=${jobId}`, `list joblog jobid=${jobId}`]);
  } finally {
    await watching?.stop();
  }
  const status = /JobStatus:\s*(\S)/.exec(waited)?.[1] ?? /JobStatus=\w+ \((\w)\)/.exec(waited)?.[1];
  if (status !== 'T' && status !== 'W') {
    throw new EngineError(`Bacula restore job ${jobId} ended with JobStatus ${status ?? '?'}: ${waited.trim().split('\n').filter((l) => /error|fatal/i.test(l)).slice(-2).join(' / ')}`, 'bacula', { jobId });
  }
  const lost = attributesNotRestored(waited, into);
  if (lost.length) {
    throw new RestoreError(
      `Bacula restore job ${jobId} gave the files back without all their ACLs or xattrs (${lost.slice(0, 3).join('; ')}${lost.length > 3 ? `; ${lost.length - 3} more` : ''}). Bacula stores an ACL entry by user or group name when the id has a name on this host at backup time; a name deleted or renamed since cannot be set again. Nothing was put in place: give the name back (useradd -u ID NAME) and restore again`,
      { engine: 'bacula', jobId, lines: lost },
    );
  }
  // Stripped paths were restored where the catalog has them: move them to where they belong.
  paths.forEach((p, i) => {
    const got = into + selected[i];
    if (selected[i] !== p && existsSync(got)) {
      mkdirSync(dirname(into + p), { recursive: true, mode: 0o700 });
      renameSync(got, join(into, p));
    }
  });
}

/**
 * The job log's lines about ACLs or xattrs the file daemon could not set. Bacula counts them as
 * warnings and still ends the job "Restore OK"; a restore that lost a site's fortification ACLs
 * must not read as one.
 */
export function attributesNotRestored(joblog: string, staging: string): string[] {
  return joblog
    .split('\n')
    .map((l) => l.replace(/^\|/, '').replace(/\|$/, '').trim())
    // Judged on the text before the first quote: a quoted file name ("acl error.txt") is the tenant's, not Bacula's.
    .filter((l) => /JobId \d+:/.test(l) && ((p) => /acl|xattr/i.test(p) && /error|can't|cannot/i.test(p))(l.split('"')[0]!.replace(/^.*?JobId \d+: /, '')))
    .map((l) => l.replace(/^.*?JobId \d+: (Warning: |Error: )?/, '').replace(/^\S+\.c:\d+ /, '').split(staging).join(''));
}

/** How often a watched restore asks the file daemon how far it got. */
const STATUS_EVERY_MS = 2000;

/**
 * While we wait on a restore job and someone watches (a terminal): every ~2 s, `status client`
 * (the file daemon writing the files) and its line for this job (files, bytes, rate) to
 * onProgress. A console without `status` in its CommandACL gets no progress, nothing else changes.
 */
function watchRestoreJob(ctx: EngineContext, onProgress: (text: string) => void, jobId: string): { stop(): Promise<void> } {
  const stop = new AbortController();
  const signal = ctx.signal ? AbortSignal.any([ctx.signal, stop.signal]) : stop.signal;
  const client = ctx.loaded.config.bacula.client;
  const loop = (async () => {
    while (!signal.aborted) {
      // timers/promises takes its abort listener off again: none pile up over a long restore.
      await sleep(STATUS_EVERY_MS, undefined, { signal }).catch(() => undefined);
      if (signal.aborted) return;
      const out = await bconsole({ ...ctx, signal }, [`status client=${q(client)}`]).catch(() => undefined);
      if (out === undefined || signal.aborted) continue;
      if (/is an invalid command|not authorized|no authorization/i.test(out)) return;
      const text = restoreStatusText(out, jobId);
      if (text) onProgress(text);
    }
  })();
  return {
    async stop() {
      stop.abort();
      await loop;
    },
  };
}

const mib = (n: number): string => `${(n / 1048576).toFixed(2)} MiB`;

/**
 * The file daemon's running-job lines for `jobId` from `status client` (9.6: `JobId 12 Job
 * RestoreFiles.… is running.` then `    Files=3 Bytes=1,234 AveBytes/sec=… LastBytes/sec=… Errors=0`)
 * as one short line; undefined when the job is not (or no longer) listed.
 */
export function restoreStatusText(status: string, jobId: string): string | undefined {
  const lines = status.split('\n');
  const start = lines.findIndex((l) => new RegExp(`^\\s*JobId[ =]${jobId}\\b`).test(l));
  if (start < 0) return undefined;
  const end = lines.findIndex((l, i) => i > start && /^\s*(JobId[ =]\d|====)/.test(l));
  const block = lines.slice(start, end < 0 ? undefined : end).join('\n');
  const n = (name: string): number | undefined => {
    const m = new RegExp(`\\b${name}=([\\d,]+)`).exec(block);
    return m ? Number(m[1]!.replace(/,/g, '')) : undefined;
  };
  const files = n('Files');
  const bytes = n('Bytes');
  if (files === undefined || bytes === undefined) return undefined;
  const rate = n('LastBytes/sec') ?? n('AveBytes/sec');
  return `restore job ${jobId}: ${files} files, ${mib(bytes)}${rate !== undefined ? `, ${mib(rate)}/s` : ''}`;
}
