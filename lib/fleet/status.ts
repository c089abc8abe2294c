import type { LoadedConfig } from '../config/load.js';
import { durationMs } from '../config/schema.js';
import { nameFilter } from '../plan/name-filter.js';
import { bconsole, jobFailureReason, listBackupJobs, listClients } from './catalog.js';
import { failuresToExplain, fleetVerdict, type FleetResult } from './verdict.js';
import { writeFleetPrometheus } from './prometheus.js';

/**
 * `fleet status`: read the catalog through bconsole (configured clients, every backup job, the
 * logs of the newest failures), judge each client, write the Prometheus textfile when configured.
 */
export async function fleetStatus(loaded: LoadedConfig, opts: { signal?: AbortSignal; now?: Date } = {}): Promise<FleetResult> {
  const f = loaded.config.fleet;
  // The same bconsole settings as `list`/`restore` (bacula.bconsole*): on the director host, its full Console.
  const b = loaded.config.bacula;
  const con = bconsole({ bconsole: b.bconsole, configFile: b.bconsole_config, timeoutMs: durationMs(f.timeout), signal: opts.signal });
  const wanted = nameFilter(f.clients, f.exclude);
  const [configured, allJobs] = await Promise.all([listClients(con), listBackupJobs(con)]);
  const clients = [...new Set([...configured, ...allJobs.map((j) => j.client)])].filter((c) => c && wanted(c));
  const jobs = allJobs.filter((j) => clients.includes(j.client));
  const reasons = new Map<number, string>();
  for (const id of failuresToExplain(jobs)) reasons.set(id, await jobFailureReason(con, id));
  const result = fleetVerdict({
    clients,
    jobs,
    reasons,
    nowSeconds: Math.floor((opts.now ?? new Date()).getTime() / 1000),
    maxAgeSeconds: Math.round(durationMs(f.max_age) / 1000),
  });
  if (loaded.paths.fleetPrometheusTextfile) writeFleetPrometheus(loaded.paths.fleetPrometheusTextfile, result.clients);
  return result;
}
