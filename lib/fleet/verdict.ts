import { ExitCode } from '../exit-codes.js';
import { ago, bytes, type Severity } from '../report/status.js';
import type { CatalogJob } from './catalog.js';

/**
 * One verdict per client of a Bacula director, from its catalog: what the director host's admin
 * (or Nagios/Icinga, or Prometheus) needs to know about the whole fleet at a glance.
 */

const GOOD = new Set(['T', 'W']);
const FAILED = new Set(['f', 'E', 'e', 'A']);
const LEVELS: Record<string, string> = { F: 'Full', I: 'Incremental', D: 'Differential' };
const STATUS_TEXT: Record<string, string> = { f: 'fatal error', E: 'error', e: 'non-fatal error', A: 'canceled' };

export interface ClientVerdict {
  readonly client: string;
  readonly status: 'ok' | 'warning' | 'stale' | 'failed';
  readonly lastGood?: { readonly jobId: number; readonly job: string; readonly level: string; readonly endedAt: number; readonly ageSeconds: number; readonly files: number; readonly bytes: number };
  /** Backups a restore of the last good point replays (Full + Differential + Incrementals since); undefined without a good Full. */
  readonly restoreChainLength?: number;
  readonly lastFailure?: { readonly jobId: number; readonly job: string; readonly level: string; readonly endedAt: number; readonly status: string; readonly reason: string };
  /** The newest finished job failed (a failure older than the last good job is history only). */
  readonly failedNow: boolean;
  readonly running: number;
  readonly problem?: string;
}

export interface FleetInput {
  readonly clients: readonly string[];
  readonly jobs: readonly CatalogJob[];
  /** Reasons by job id, for the failures that are reported (fetched from their job logs). */
  readonly reasons: ReadonlyMap<number, string>;
  readonly nowSeconds: number;
  readonly maxAgeSeconds: number;
}

/** The failures worth a job-log lookup: each client's newest failed job. */
export function failuresToExplain(jobs: readonly CatalogJob[]): number[] {
  const newest = new Map<string, CatalogJob>();
  for (const j of jobs) if (FAILED.has(j.status) && (newest.get(j.client)?.endedAt ?? -1) <= j.endedAt) newest.set(j.client, j);
  return [...newest.values()].map((j) => j.jobId);
}

/**
 * The chain a restore of `good[last]` replays: its Full, the newest Differential after that Full,
 * and every Incremental after both. Jobs are one client's good backups, oldest first.
 */
export function chainLength(good: readonly CatalogJob[]): number | undefined {
  const lastIndex = (level: string, after: number): number => {
    for (let i = good.length - 1; i > after; i--) if (good[i]!.level === level) return i;
    return -1;
  };
  const full = lastIndex('F', -1);
  if (full < 0) return undefined;
  const diff = lastIndex('D', full);
  const since = Math.max(full, diff);
  return 1 + (diff >= 0 ? 1 : 0) + good.slice(since + 1).filter((j) => j.level === 'I').length;
}

/** One client's verdict from its own jobs (any order). */
export function clientVerdict(client: string, own: readonly CatalogJob[], input: FleetInput): ClientVerdict {
  const jobs = [...own].sort((a, b) => a.endedAt - b.endedAt || a.jobId - b.jobId);
  const finished = jobs.filter((j) => GOOD.has(j.status) || FAILED.has(j.status));
  const good = finished.filter((j) => GOOD.has(j.status));
  const failures = finished.filter((j) => FAILED.has(j.status));
  const last = finished[finished.length - 1];
  const g = good[good.length - 1];
  const f = failures[failures.length - 1];
  const lastGood = g && { jobId: g.jobId, job: g.name, level: LEVELS[g.level] ?? g.level, endedAt: g.endedAt, ageSeconds: Math.max(0, input.nowSeconds - g.endedAt), files: g.files, bytes: g.bytes };
  const lastFailure = f && { jobId: f.jobId, job: f.name, level: LEVELS[f.level] ?? f.level, endedAt: f.endedAt, status: f.status, reason: input.reasons.get(f.jobId) ?? STATUS_TEXT[f.status] ?? f.status };
  const failedNow = last !== undefined && FAILED.has(last.status);
  const running = jobs.filter((j) => !GOOD.has(j.status) && !FAILED.has(j.status)).length;
  // The chain of the newest good point: jobs of that job's own name (one client may run several).
  const restoreChainLength = g ? chainLength(good.filter((j) => j.name === g.name)) : undefined;

  let status: ClientVerdict['status'] = 'ok';
  let problem: string | undefined;
  if (failedNow) {
    status = 'failed';
    problem = `job ${f!.jobId} (${lastFailure!.level}) failed: ${lastFailure!.reason}`;
  } else if (!lastGood) {
    status = 'stale';
    problem = jobs.length ? 'no successful backup in the catalog' : 'never backed up';
  } else if (lastGood.ageSeconds > input.maxAgeSeconds) {
    status = 'stale';
    problem = `last good backup ${ago(lastGood.ageSeconds * 1000)} ago, older than max_age ${ago(input.maxAgeSeconds * 1000)}`;
  } else if (last?.status === 'W') {
    status = 'warning';
    problem = `job ${last.jobId} finished with warnings`;
  }
  if (status === 'failed' && lastGood && lastGood.ageSeconds > input.maxAgeSeconds) problem += `; last good backup ${ago(lastGood.ageSeconds * 1000)} ago`;
  return { client, status, lastGood, restoreChainLength, lastFailure, failedNow, running, problem };
}

export interface FleetResult {
  readonly exitCode: ExitCode;
  readonly severity: Severity;
  readonly clients: readonly ClientVerdict[];
  readonly lines: string[];
  readonly json: Record<string, unknown>;
}

export function fleetVerdict(input: FleetInput): FleetResult {
  const byClient = new Map<string, CatalogJob[]>();
  for (const j of input.jobs) {
    const list = byClient.get(j.client);
    if (list) list.push(j);
    else byClient.set(j.client, [j]);
  }
  const clients = [...input.clients].sort().map((c) => clientVerdict(c, byClient.get(c) ?? [], input));
  const failed = clients.filter((c) => c.status === 'failed');
  const stale = clients.filter((c) => c.status === 'stale');
  const warned = clients.filter((c) => c.status === 'warning');
  const bad = [...failed, ...stale];
  const severity: Severity = bad.length ? 'CRITICAL' : warned.length ? 'WARNING' : 'OK';
  const n = clients.length;
  const headline = bad.length
    ? `${failed.length} failed, ${stale.length} stale of ${n} client${n === 1 ? '' : 's'}: ${bad.map((c) => `${c.client} (${c.problem})`).join('; ')}`
    : warned.length
      ? `${warned.length} of ${n} clients with warnings: ${warned.map((c) => c.client).join(', ')}`
      : n === 0
        ? 'no clients configured on this director'
        : `${n} client${n === 1 ? '' : 's'} backed up, newest good backup of each within ${ago(input.maxAgeSeconds * 1000)}`;
  const oldest = Math.max(0, ...clients.map((c) => c.lastGood?.ageSeconds ?? 0));
  const perf = `clients=${n} failed=${failed.length};;1;0 stale=${stale.length};;1;0 oldest_good_age=${oldest}s;;${input.maxAgeSeconds};0`;
  const lines = [`${severity}: ${headline} | ${perf}`, ...clients.map(clientLine)];
  return {
    exitCode: bad.length ? ExitCode.STALE : ExitCode.OK,
    severity,
    clients,
    lines,
    json: {
      status: severity.toLowerCase(),
      ok: bad.length === 0,
      summary: headline,
      checkedAt: new Date(input.nowSeconds * 1000).toISOString(),
      maxAgeSeconds: input.maxAgeSeconds,
      counts: { clients: n, ok: n - bad.length - warned.length, warning: warned.length, failed: failed.length, stale: stale.length },
      clients: clients.map((c) => ({
        client: c.client,
        status: c.status,
        problem: c.problem ?? null,
        lastGood: c.lastGood ? { ...c.lastGood, endedAt: iso(c.lastGood.endedAt) } : null,
        restoreChainLength: c.restoreChainLength ?? null,
        lastFailure: c.lastFailure ? { ...c.lastFailure, endedAt: iso(c.lastFailure.endedAt) } : null,
        running: c.running,
      })),
    },
  };
}

const iso = (s: number): string => new Date(s * 1000).toISOString();

function clientLine(c: ClientVerdict): string {
  const parts = [`${c.client}: ${c.status.toUpperCase()}`];
  if (c.problem) parts.push(c.problem);
  if (c.lastGood) parts.push(`last good ${c.lastGood.level} job ${c.lastGood.jobId} ${ago(c.lastGood.ageSeconds * 1000)} ago (${c.lastGood.files} files, ${bytes(c.lastGood.bytes)})`);
  if (c.restoreChainLength !== undefined) parts.push(`restore chain ${c.restoreChainLength}`);
  if (c.lastFailure && !c.failedNow) parts.push(`last failure job ${c.lastFailure.jobId} ${iso(c.lastFailure.endedAt)}: ${c.lastFailure.reason}`);
  if (c.running) parts.push(`${c.running} running`);
  return parts.join(', ');
}
