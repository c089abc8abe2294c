import { writeFileAtomic } from '../atomic-file.js';
import { renderMetrics, type Metric } from '../report/prometheus.js';
import type { ClientVerdict } from './verdict.js';

/**
 * The fleet's metrics for node-exporter's textfile collector on the director host, one sample
 * per client (`client` label = the Bacula Client name). Alert on
 * `time() - apiscp_backup_fleet_last_success_timestamp_seconds > 26*3600` and on
 * `apiscp_backup_fleet_client_failed == 1`; a client that never succeeded reports 0 and alerts too.
 */
export function renderFleetPrometheus(clients: readonly ClientVerdict[]): string {
  const per = (value: (c: ClientVerdict) => number | undefined) =>
    clients.flatMap((c) => {
      const v = value(c);
      return v === undefined ? [] : [{ labels: { client: c.client }, value: v }];
    });
  const metrics: Metric[] = [
    { name: 'apiscp_backup_fleet_last_success_timestamp_seconds', help: 'Unix time the client\'s newest good backup job (T or W) ended; 0 = none in the catalog.', samples: per((c) => c.lastGood?.endedAt ?? 0) },
    { name: 'apiscp_backup_fleet_last_success_bytes', help: 'Bytes of the client\'s newest good backup job.', samples: per((c) => c.lastGood?.bytes) },
    { name: 'apiscp_backup_fleet_last_failure_timestamp_seconds', help: 'Unix time the client\'s newest failed job ended (absent: none in the catalog).', samples: per((c) => c.lastFailure?.endedAt) },
    { name: 'apiscp_backup_fleet_client_failed', help: '1 when the client\'s newest finished job failed (f, E, A).', samples: per((c) => (c.failedNow ? 1 : 0)) },
    { name: 'apiscp_backup_fleet_client_stale', help: '1 when the client has no good backup younger than fleet.max_age.', samples: per((c) => (c.status === 'stale' ? 1 : 0)) },
    { name: 'apiscp_backup_fleet_restore_chain_length', help: 'Backups a restore of the newest good point replays (Full + Differential + Incrementals).', samples: per((c) => c.restoreChainLength) },
    { name: 'apiscp_backup_fleet_jobs_running', help: 'The client\'s jobs the catalog shows as not finished.', samples: per((c) => c.running) },
  ];
  return renderMetrics(metrics);
}

/** Atomic, 0644 (the exporter runs as its own user); the collector never reads a half-written file. */
export function writeFleetPrometheus(file: string, clients: readonly ClientVerdict[]): void {
  writeFileAtomic(file, renderFleetPrometheus(clients), { mode: 0o644, dirMode: 0o755 });
}
