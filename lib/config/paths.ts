import { isAbsolute, join, resolve } from 'node:path';
import type { Config } from './schema.js';

/**
 * Place a system path below the configured root. A path that is already below the root is kept,
 * so configs written for a sandbox with full paths work too.
 */
export function underRoot(root: string, path: string): string {
  const r = resolve(root);
  if (r === '/') return resolve(path);
  const p = isAbsolute(path) ? path : `/${path}`;
  if (p === r || p.startsWith(r + '/')) return p;
  return join(r, p);
}

export interface ResolvedPaths {
  readonly root: string;
  readonly home: string;
  readonly dumpsDir: string;
  readonly lockPath: string;
  readonly stateDir: string;
  readonly statusFile: string;
  readonly logFile: string;
  readonly cronDir: string;
  readonly duplicityArchiveDir: string;
  readonly stagingDir: string;
  /** monitor.prometheus_textfile, when set. */
  readonly prometheusTextfile: string | undefined;
  /** fleet.prometheus_textfile, when set. */
  readonly fleetPrometheusTextfile: string | undefined;
  /** Globs as configured, placed under the root (expansion happens in plan/). */
  readonly include: readonly string[];
  readonly exclude: readonly string[];
}

export function resolvePaths(config: Config): ResolvedPaths {
  const root = resolve(config.paths.root);
  const at = (p: string): string => underRoot(root, p);
  const stateDir = at(config.state.dir);
  return {
    root,
    home: at(config.paths.home),
    dumpsDir: at(config.dumps.dir),
    lockPath: at(config.lock.path),
    stateDir,
    statusFile: config.monitor.status_file === undefined ? join(stateDir, 'status.json') : at(config.monitor.status_file),
    logFile: at(config.logging.file),
    cronDir: at(config.cron.dir),
    duplicityArchiveDir: at(config.duplicity.archive_dir),
    stagingDir: at(config.restore.staging_dir),
    prometheusTextfile: config.monitor.prometheus_textfile === undefined ? undefined : at(config.monitor.prometheus_textfile),
    fleetPrometheusTextfile: config.fleet.prometheus_textfile === undefined ? undefined : at(config.fleet.prometheus_textfile),
    include: config.paths.include.map(at),
    exclude: config.paths.exclude.map(at),
  };
}

export const DEFAULT_CONFIG_FILE = '/etc/apiscp-backup/config.yaml';
