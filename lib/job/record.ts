import type { LoadedConfig } from '../config/load.js';
import type { Logger } from '../log.js';
import { ping } from '../report/heartbeat.js';
import { writePrometheusTextfile } from '../report/prometheus.js';
import type { RunState } from '../report/run-state.js';
import { mergeRunState, readRunState, writeRunState } from '../report/state-file.js';
import { failureSummary } from '../report/summary.js';
import { readVerifyState, verifyStateFile } from '../model/verify-state.js';
import { warningsHeadline, type Warning } from '../warnings.js';

/**
 * report: persist what a run did (status.json, merged with history for the watchdog clock and
 * the restore chain), refresh the Prometheus textfile and ping the heartbeat. Reporting never
 * turns a good backup into a failed one: its own problems are warnings.
 */
export async function recordRun(loaded: LoadedConfig, log: Logger, state: RunState, options: { ping?: boolean } = {}): Promise<RunState> {
  const file = loaded.paths.statusFile;
  const merged = mergeRunState(readRunState(file), state);
  try {
    writeRunState(file, merged);
  } catch (err) {
    log.warn(`cannot write the status file ${file}: ${(err as Error).message}`);
  }
  if (merged.status !== 'running') refreshMetrics(loaded, log, merged);
  if (options.ping !== false && merged.status !== 'running') {
    const failed = merged.status === 'failed';
    const warnings = merged.warnings ?? [];
    await ping(failed ? 'failure' : 'success', loaded.config.monitor.heartbeat, {
      log,
      logTail: failed || warnings.length || merged.problems.length ? summaryFor(loaded, merged) : undefined,
      summary: warnings.length ? `apiscp-backup: ${warningsHeadline(warnings)}` : undefined,
    });
  }
  return merged;
}

export function summaryFor(loaded: LoadedConfig, state: RunState): string {
  return failureSummary(state, { logFile: loaded.paths.logFile, dumpsDir: loaded.paths.dumpsDir });
}

export function previousState(loaded: LoadedConfig): RunState | undefined {
  return readRunState(loaded.paths.statusFile);
}

/** Rewrite the Prometheus textfile from the last run and the last verifications (after either changes). */
export function refreshMetrics(loaded: LoadedConfig, log: Logger, state = readRunState(loaded.paths.statusFile)): void {
  const prom = loaded.paths.prometheusTextfile;
  if (!prom || !state) return;
  try {
    writePrometheusTextfile(prom, state, readVerifyState(verifyStateFile(loaded.paths.stateDir)));
  } catch (err) {
    log.warn(`cannot write the Prometheus textfile ${prom}: ${(err as Error).message}`);
  }
}

/**
 * Warnings found after the run was recorded (the nightly verification) join the run's own in
 * status.json, so status, the cron summary and the metrics show them like any other. Written
 * as is, not merged again: a second merge would count the backup twice in the restore chain.
 */
export function addRunWarnings(loaded: LoadedConfig, log: Logger, state: RunState, warnings: readonly Warning[]): RunState {
  if (warnings.length === 0) return state;
  const updated: RunState = { ...state, warnings: [...(state.warnings ?? []), ...warnings], status: state.status === 'ok' ? 'warning' : state.status };
  try {
    writeRunState(loaded.paths.statusFile, updated);
  } catch (err) {
    log.warn(`cannot write the status file ${loaded.paths.statusFile}: ${(err as Error).message}`);
  }
  return updated;
}
