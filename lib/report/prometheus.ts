import type { RunState } from './run-state.js';
import { writeFileAtomic } from '../atomic-file.js';
import { countByCode } from '../warnings.js';
import { isSuccessfulRun, restoreChainLength } from './state-file.js';
import type { VerifyState } from '../model/verify-state.js';

export interface Sample {
  readonly labels?: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Metric {
  readonly name: string;
  readonly help: string;
  readonly samples: readonly Sample[];
}

const seconds = (iso: string | undefined): number | undefined => (iso === undefined ? undefined : Date.parse(iso) / 1000);

/**
 * The metrics, all gauges labelled with the engine so one alert rule fits every server. Alert
 * on `time() - apiscp_backup_last_success_timestamp_seconds`: it is 0 when no backup ever
 * succeeded, so a server that never backed up alerts too. Values we do not know (duration of a
 * run still in progress) are left out rather than reported as 0.
 */
export function renderPrometheus(state: RunState, verify?: VerifyState): string {
  const engine = { engine: state.engine };
  const one = (value: number | undefined): Sample[] => (value === undefined || !Number.isFinite(value) ? [] : [{ labels: engine, value }]);
  const chain = restoreChainLength(state.chain);
  const bytesSamples: Sample[] = [];
  if (state.dumps) bytesSamples.push({ labels: { ...engine, part: 'dumps' }, value: state.dumps.bytes });
  if (state.backup?.bytes !== undefined) bytesSamples.push({ labels: { ...engine, part: 'backup' }, value: state.backup.bytes });

  const metrics: Metric[] = [
    { name: 'apiscp_backup_last_success_timestamp_seconds', help: 'Unix time the newest successful backup (or dumps-only run) finished; 0 = never.', samples: one(seconds(state.lastSuccessAt) ?? 0) },
    { name: 'apiscp_backup_last_run_timestamp_seconds', help: 'Unix time the last run started.', samples: one(seconds(state.startedAt)) },
    { name: 'apiscp_backup_last_run_duration_seconds', help: 'How long the last finished run took.', samples: one(state.durationMs === undefined ? undefined : state.durationMs / 1000) },
    { name: 'apiscp_backup_last_run_bytes', help: 'Bytes the last run wrote: part="dumps" (compressed dumps), part="backup" (what the engine reported).', samples: bytesSamples },
    { name: 'apiscp_backup_dump_failures', help: 'Database dumps that failed in the last run.', samples: one(state.dumps?.failed ?? 0) },
    { name: 'apiscp_backup_warnings', help: 'Warnings of the last run (events skipped, a database missing, restic exit 3…): the backup exists but something needs a look.', samples: one(state.warnings?.length ?? 0) },
    {
      name: 'apiscp_backup_warnings_by_code',
      help: 'Warnings of the last run per code (see docs/reporting.md).',
      samples: [...countByCode(state.warnings ?? [])].map(([code, n]) => ({ labels: { ...engine, code }, value: n })),
    },
    { name: 'apiscp_backup_last_run_success', help: '1 when the last run left a usable backup (warnings included), else 0; 0 while a run is in progress.', samples: one(state.status !== 'running' && isSuccessfulRun(state) ? 1 : 0) },
    { name: 'apiscp_backup_restore_chain_length', help: 'Backups a restore must replay: the full, the newest differential, and every incremental since.', samples: one(chain) },
    ...verifyMetrics(verify, engine),
  ];

  return renderMetrics(metrics);
}

/** The text exposition format: HELP, TYPE gauge, one line per sample. */
export function renderMetrics(metrics: readonly Metric[]): string {
  const out: string[] = [];
  for (const m of metrics) {
    out.push(`# HELP ${m.name} ${escapeHelp(m.help)}`, `# TYPE ${m.name} gauge`);
    for (const s of m.samples) out.push(`${m.name}${labelText(s.labels)} ${formatValue(s.value)}`);
  }
  return out.join('\n') + '\n';
}

/**
 * node-exporter's textfile collector reads every *.prom in its directory at any moment: the
 * atomic write's temp name (a dotfile ending in .tmp-…) is never read half-written. 0644: the
 * exporter runs as its own user.
 */
export function writePrometheusTextfile(file: string, state: RunState, verify?: VerifyState): void {
  writeFileAtomic(file, renderPrometheus(state, verify), { mode: 0o644, dirMode: 0o755 });
}

/**
 * Verification: per database the time it last passed (0 = never) and whether its last check
 * failed, so `time() - …_verify_last_success_timestamp_seconds > 8 * 86400` finds databases the
 * rotation has not proven for a week, and `…_verify_failed == 1` the broken ones.
 */
function verifyMetrics(verify: VerifyState | undefined, engine: { engine: string }): Metric[] {
  if (!verify) return [];
  const dbs = Object.values(verify.databases);
  const labels = (d: (typeof dbs)[number]): Record<string, string> => ({ ...engine, kind: d.kind, database: d.database, site: d.site });
  return [
    {
      name: 'apiscp_backup_verify_last_success_timestamp_seconds',
      help: 'Unix time each database dump last loaded and matched the server inventory (apiscp-backup verify); 0 = never.',
      samples: dbs.map((d) => ({ labels: labels(d), value: d.lastVerifiedAt ? Date.parse(d.lastVerifiedAt) / 1000 : 0 })),
    },
    {
      name: 'apiscp_backup_verify_failed',
      help: '1 when the last verification of the database failed (2 = it could not be checked), else 0.',
      samples: dbs.map((d) => ({ labels: labels(d), value: d.outcome === 'failed' ? 1 : d.outcome === 'error' ? 2 : 0 })),
    },
    {
      name: 'apiscp_backup_verify_last_run_timestamp_seconds',
      help: 'Unix time the last verification finished.',
      samples: verify.lastRun ? [{ labels: engine, value: Date.parse(verify.lastRun.at) / 1000 }] : [],
    },
  ];
}

function labelText(labels: Readonly<Record<string, string>> | undefined): string {
  if (!labels) return '';
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  return `{${parts.join(',')}}`;
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function formatValue(v: number): string {
  // Integers print plainly; timestamps keep millisecond precision without exponent notation.
  return Number.isInteger(v) ? String(v) : String(Math.round(v * 1000) / 1000);
}
