import { ExitCode } from '../exit-codes.js';
import type { LockHolder } from '../lock/lock.js';
import type { RunState } from './run-state.js';
import { diedText, lockWaitLines, type RunProgress } from './run-progress.js';
import { busyText, type BusyFailure } from './busy-file.js';
import { isSuccessfulRun, restoreChainLength } from './state-file.js';
import { verifyVerdict, type VerifyStatusInput } from './verify-status.js';
import { pitrStatus } from './pitr-status.js';
import type { Window } from '../binlog/window.js';

export interface StatusInput {
  /** undefined: no status file (never ran) or unreadable (then `stateError` says why). */
  readonly state: RunState | undefined;
  readonly stateError?: string;
  readonly now: Date;
  readonly maxAgeMs: number;
  /** The exports scope: on = the panel exports again (a panel update can re-enable it). undefined = no panel. */
  readonly scope?: {
    readonly on: boolean | undefined;
    readonly error?: string;
    /** The setting's name, for messages (the scope, or `cp.bootstrapper manual_database_backups` on older panels). */
    readonly name: string;
    /** What /etc/cron.daily/10backup_dbs says about tonight (lib/panel/nightly-export). */
    readonly nightly?: { readonly text: string; readonly stopped: boolean | undefined };
  };
  /** Other things worth a WARNING (e.g. the Bacula add-in's template drifted). */
  readonly warnings?: readonly string[];
  /** Who holds the run lock right now; `{}` = nobody. Omit when not checked. */
  readonly lock?: { readonly holder?: LockHolder };
  /**
   * The job under way (running.json), and whether the process it names is gone (killed, a
   * reboot): then the run died. Omitted: no job is under way.
   */
  readonly progress?: { readonly run: RunProgress; readonly gone: boolean };
  /** The last job that did not run because the lock was busy (busy.json). */
  readonly busy?: BusyFailure;
  /** Verification results and settings (verify.json); omitted: not shown. */
  readonly verify?: Omit<VerifyStatusInput, 'databases'>;
  /** MariaDB point-in-time: the binlog window (lib/binlog/window.ts); omitted: not shown. */
  readonly pitr?: Window;
  /** An append-only repository: where its retention runs (engine/remote.ts hostSideRetention). */
  readonly retention?: string;
}

export type Severity = 'OK' | 'WARNING' | 'CRITICAL' | 'UNKNOWN';

export interface StatusResult {
  /** false makes the watchdog exit non-zero (cron mails it). Warnings stay ok. */
  readonly ok: boolean;
  readonly exitCode: ExitCode;
  /** Nagios/Icinga plugin convention, `status`'s exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (the state cannot be read). */
  readonly nagiosCode: 0 | 1 | 2 | 3;
  readonly severity: Severity;
  /** First line is the plugin output (`OK: …` / `CRITICAL: …` with perfdata), then details. */
  readonly lines: string[];
  readonly json: Record<string, unknown>;
}

/** What the inputs say about the run under way, the last one and the lock, read once. */
interface Seen {
  readonly state: RunState | undefined;
  readonly nowMs: number;
  readonly ageMs: number | undefined;
  readonly holder: LockHolder | undefined;
  /** After a Bacula pre-backup hook: dumps done, the director backing up, post-backup to record it. */
  readonly pending: boolean;
  /** The job under way (its process alive). */
  readonly progress: RunProgress | undefined;
  /** The job running.json names, its process gone (killed, a reboot). */
  readonly deadRun: RunProgress | undefined;
  /** The state says running, nobody holds the lock, no running.json: killed before it wrote one. */
  readonly died: boolean;
  /** The last job the busy lock kept from running, until a later run succeeds. */
  readonly busy: BusyFailure | undefined;
}

function see(input: StatusInput): Seen {
  const { state } = input;
  const nowMs = input.now.getTime();
  const lastSuccessMs = state?.lastSuccessAt ? Date.parse(state.lastSuccessAt) : undefined;
  const holder = input.lock?.holder;
  // After a Bacula pre-backup hook the state says "running" with the backup pending and no lock
  // held: the director is backing up and post-backup will finish the record. Otherwise a
  // "running" state nobody holds the lock for means the run was killed (-9, reboot, OOM).
  const pending = state?.status === 'running' && state.backup?.status === 'pending' && holder === undefined;
  const progress = input.progress && !input.progress.gone ? input.progress.run : undefined;
  return {
    state,
    nowMs,
    ageMs: lastSuccessMs === undefined ? undefined : Math.max(0, nowMs - lastSuccessMs),
    holder,
    pending,
    progress,
    deadRun: input.progress?.gone ? input.progress.run : undefined,
    died: state?.status === 'running' && input.lock !== undefined && holder === undefined && !pending && !progress,
    // A job that found the lock busy stays CRITICAL until a run that started after it succeeds
    // (the holder finishing does not count: it was the one in the way).
    busy: input.busy && !(state && Date.parse(state.startedAt) > Date.parse(input.busy.at) && state.status !== 'running' && isSuccessfulRun(state)) ? input.busy : undefined,
  };
}

/** Critical problems and warnings, most urgent first. */
function problemsOf(input: StatusInput, seen: Seen, verify: ReturnType<typeof verifyVerdict> | undefined, pitr: ReturnType<typeof pitrStatus>): { critical: string[]; warning: string[] } {
  const { state, ageMs, deadRun, died, busy, nowMs } = seen;
  const critical: string[] = [];
  const warning: string[] = [];
  // Said before anything else: a dead run is the first thing the admin must hear about.
  if (deadRun) critical.push(diedText(deadRun));
  if (busy) critical.push(busyText(busy));
  if (!state) {
    critical.push(input.stateError && !/does not exist/.test(input.stateError) ? `cannot read run state: ${input.stateError}` : 'no backup has run yet');
  } else {
    if (ageMs === undefined) critical.push('no successful backup recorded');
    else if (ageMs > input.maxAgeMs) critical.push(`last successful backup ${ago(ageMs)} ago, older than max_age ${ago(input.maxAgeMs)}`);
    if (state.status === 'failed') critical.push(`last run failed${state.problems[0] ? `: ${state.problems[0]}` : ''}`);
    if (died && !deadRun) critical.push(`run started ${ago(nowMs - Date.parse(state.startedAt))} ago never finished (no process holds the lock)`);
    const warnings = state.warnings ?? [];
    if (state.status === 'warning' || warnings.length) {
      // Each warning by name (events skipped in 'it''s', database b_shop missing…): the plugin
      // line is what the admin reads first. Problems of a warn-only run (on_dump_failure: warn) too.
      const listed = [...(state.status === 'warning' ? state.problems : []), ...warnings.map((w) => w.message)];
      if (listed.length === 0) warning.push('last run had warnings');
      for (const p of listed) warning.push(p);
    }
  }
  if (verify) {
    critical.push(...verify.critical);
    warning.push(...verify.warning);
  }
  const scopeName = input.scope?.name;
  if (input.scope?.error) warning.push(`cannot read scope ${scopeName}: ${input.scope.error}`);
  else if (input.scope?.on === true) warning.push(`panel nightly exports are on again (${scopeName}); the next run turns them off`);
  else if (input.scope?.on === false && input.scope.nightly?.stopped === false) warning.push(`panel nightly export ${input.scope.nightly.text}`);
  warning.push(...(input.warnings ?? []));
  warning.push(...pitr.warnings);
  return { critical, warning };
}

/** The lines after the plugin line: what runs, the last run, its dumps and backup, verify, PITR, the panel, then `also:` problems. */
function detailsOf(input: StatusInput, seen: Seen, verify: ReturnType<typeof verifyVerdict> | undefined, pitr: ReturnType<typeof pitrStatus>, problems: { critical: string[]; warning: string[] }): string[] {
  const { state, progress, pending, died, holder, ageMs, nowMs } = seen;
  const details: string[] = [];
  if (progress) details.push(progressText(progress, nowMs), ...lockWaitLines(progress));
  if (state) {
    const running = state.status === 'running' && !died && !progress;
    details.push(
      pending
        ? `running: dumps done ${state.finishedAt ?? state.startedAt}, waiting for the ${state.engine} job to finish (post-backup records it)`
        : running
        ? `running: since ${state.startedAt} (${ago(nowMs - Date.parse(state.startedAt))})${holder ? `, pid ${holder.pid} (${holder.command})` : ''}`
        : `last run: ${state.status}, ${state.trigger}, engine ${state.engine}${state.level ? ` ${state.level}` : ''}, started ${state.startedAt}${state.durationMs !== undefined ? `, took ${ago(state.durationMs)}` : ''}`,
    );
    if (state.lastSuccessAt) details.push(`last success: ${state.lastSuccessAt} (${ago(ageMs!)} ago, max_age ${ago(input.maxAgeMs)})`);
    if (state.dumps) {
      const failedNames = state.dumps.databases.filter((d) => d.status === 'failed').map((d) => d.database ?? `${d.kind} server-wide`);
      details.push(`dumps: ${state.dumps.ok} ok, ${state.dumps.failed} failed, ${bytes(state.dumps.bytes)}${state.runId ? ` (run ${state.runId})` : ''}${failedNames.length ? `; failed: ${failedNames.slice(0, 5).join(', ')}${failedNames.length > 5 ? ', …' : ''}` : ''}`);
    }
    const notDumped = (state.dumps?.missing ?? []).filter((m) => m.reason === 'gone' || m.reason === 'excluded');
    if (notDumped.length) details.push(`no longer dumped (site/database deleted or excluded; last dump kept for dumps.keep_gone): ${notDumped.slice(0, 5).map((m) => `${m.kind} '${m.database}'`).join(', ')}${notDumped.length > 5 ? ', …' : ''}`);
    if (state.backup) details.push(`backup: ${state.backup.status}${state.backup.detail ? ` (${state.backup.detail})` : ''}${state.backup.id ? `, id ${state.backup.id}` : ''}`);
    const chain = chainText(state.chain);
    if (chain) details.push(`restore chain: ${chain}`);
  }
  if (verify) details.push(...verify.details);
  details.push(...pitr.details);
  if (input.retention) details.push(input.retention);
  if (input.scope && input.scope.on === false) {
    details.push(`panel nightly exports: off (${input.scope.name})${input.scope.nightly ? `; ${input.scope.nightly.text}` : ''}`);
  }
  const { critical, warning } = problems;
  for (const p of critical.length ? [...critical, ...warning].slice(1) : []) details.push(`also: ${p}`);
  return details;
}

/**
 * One verdict from the run state for `status`, the watchdog and monitoring checks. Critical
 * (exit STALE): never ran, unreadable state, last success older than max_age, last run failed,
 * a run recorded as running that no process holds any more. Warning (still exit OK): last run
 * had warnings, the panel's exports scope is back on or cannot be read.
 */
export function computeStatus(input: StatusInput): StatusResult {
  const { state, now, maxAgeMs } = input;
  const seen = see(input);
  const { ageMs, holder, progress, deadRun, died, busy } = seen;
  const databases = (state?.dumps?.databases ?? []).flatMap((d) => (d.database === null ? [] : [{ kind: d.kind, database: d.database }]));
  const verify = input.verify ? verifyVerdict({ ...input.verify, databases }, now) : undefined;
  const pitr = pitrStatus(input.pitr, seen.nowMs);
  const problems = problemsOf(input, seen, verify, pitr);
  const { critical, warning } = problems;

  const unreadable = !state && input.stateError !== undefined && !/does not exist/.test(input.stateError);
  const severity: Severity = unreadable ? 'UNKNOWN' : critical.length ? 'CRITICAL' : warning.length ? 'WARNING' : 'OK';
  const warningCount = state?.warnings?.length ?? 0;
  // WARNING lists every warning on the plugin line (monitoring shows only that line); CRITICAL
  // names the first critical problem and the rest follow as `also:` lines.
  const headline = critical[0] ?? (warning.length ? warning.join('; ') : okHeadline(state!, ageMs!, progress !== undefined));
  const details = detailsOf(input, seen, verify, pitr, problems);

  const chainLength = restoreChainLength(state?.chain);
  const perf = [
    ageMs !== undefined ? `age=${Math.round(ageMs / 1000)}s;;${Math.round(maxAgeMs / 1000)};0` : undefined,
    state?.dumps ? `dumps_failed=${state.dumps.failed};;1;0` : undefined,
    state ? `warnings=${warningCount};1;;0` : undefined,
    chainLength !== undefined ? `restore_chain=${chainLength};;;1` : undefined,
  ].filter(Boolean);
  const first = `${severity}: ${headline}${perf.length ? ` | ${perf.join(' ')}` : ''}`;

  const ok = critical.length === 0;
  return {
    ok,
    exitCode: ok ? ExitCode.OK : ExitCode.STALE,
    nagiosCode: severity === 'UNKNOWN' ? 3 : severity === 'CRITICAL' ? 2 : severity === 'WARNING' ? 1 : 0,
    severity,
    lines: [first, ...details],
    json: {
      status: severity.toLowerCase(),
      ok,
      summary: headline,
      problems: [...critical, ...warning],
      warnings: state?.warnings ?? [],
      checkedAt: now.toISOString(),
      lastSuccessAt: state?.lastSuccessAt ?? null,
      ageSeconds: ageMs === undefined ? null : Math.round(ageMs / 1000),
      maxAgeSeconds: Math.round(maxAgeMs / 1000),
      running: progress
        ? {
            since: progress.startedAt,
            pid: progress.process.pid,
            command: progress.command,
            trigger: progress.trigger,
            phase: progress.phase,
            updatedAt: progress.updatedAt,
            databases: progress.dumps ? { done: progress.dumps.done, total: progress.dumps.total, current: progress.dumps.current ?? null } : null,
            bytes: progress.dumps?.bytes ?? null,
            lockWaits: progress.lockWaits ?? null,
            holder: holder ?? null,
          }
        : state?.status === 'running' && !died
        ? { since: state.startedAt, holder: holder ?? null }
        : null,
      busy: busy ? { at: busy.at, command: busy.command, job: busy.job ?? null, holder: busy.holder ?? null } : null,
      died: deadRun ? { since: deadRun.startedAt, pid: deadRun.process.pid, phase: deadRun.phase, command: deadRun.command } : null,
      restoreChainLength: chainLength ?? null,
      ...(input.retention ? { retention: input.retention } : {}),
      scope: input.scope
        ? { name: input.scope.name, on: input.scope.on ?? null, error: input.scope.error ?? null, nightly: input.scope.nightly ?? null }
        : null,
      stateError: input.stateError ?? null,
      verify: verify?.json ?? null,
      lastRun: state ?? null,
    },
  };
}

function okHeadline(state: RunState, ageMs: number, working: boolean): string {
  const what = state.engine === 'none' ? 'dumps' : 'backup';
  // Counted as `list` counts them: databases, not the users/roles exports beside them.
  const n = state.dumps ? (state.dumps.databases.length ? state.dumps.databases.filter((d) => d.database !== null && d.status === 'ok').length : state.dumps.ok) : 0;
  const dbs = state.dumps ? `, ${n} database${n === 1 ? '' : 's'}` : '';
  const running = state.status === 'running' || working ? ', a run is in progress' : '';
  return `last ${what} ${ago(ageMs)} ago (engine ${state.engine}${dbs})${running}`;
}

function progressText(p: RunProgress, nowMs: number): string {
  const dumps = p.dumps ? `, databases ${p.dumps.done}/${p.dumps.total}${p.dumps.bytes !== undefined ? `, ${bytes(p.dumps.bytes)} written` : ''}` : '';
  return `running: ${p.command} since ${p.startedAt} (${ago(nowMs - Date.parse(p.startedAt))}), pid ${p.process.pid}, phase ${p.phase}${dumps}`;
}

function chainText(chain: RunState['chain']): string | undefined {
  const length = restoreChainLength(chain);
  if (!chain || length === undefined) return undefined;
  const parts = [chain.lastFullAt ? `full ${chain.lastFullAt}` : 'full (date unknown)'];
  if (chain.lastDifferentialAt) parts.push(`differential ${chain.lastDifferentialAt}`);
  if (chain.incrementalsSince) parts.push(`${chain.incrementalsSince} incremental${chain.incrementalsSince === 1 ? '' : 's'}`);
  return `${length} backup${length === 1 ? '' : 's'} to replay (${parts.join(' + ')})`;
}

/** 3h, 2d 4h, 12m, 40s: short enough for a plugin line. */
export function ago(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return m % 60 && h < 10 ? `${h}h ${m % 60}m` : `${h}h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d}d ${h % 24}h` : `${d}d`;
}

export function bytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/**
 * A size in the units the engine itself prints, so `list` and the engine's own output agree:
 * Bacula and borg count in powers of 1000 (MB), restic in powers of 1024 (MiB), as we do.
 */
export function sizeIn(n: number, base: 1000 | 1024): string {
  const units = base === 1000 ? ['B', 'kB', 'MB', 'GB', 'TB'] : ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= base && i < units.length - 1) {
    v /= base;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}
