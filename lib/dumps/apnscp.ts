import { existsSync } from 'node:fs';
import type { LoadedConfig } from '../config/load.js';
import { durationMs } from '../config/schema.js';
import { CommandError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import type { Logger } from '../log.js';
import { cmd, describe, type Command } from '../proc/command.js';
import { run } from '../proc/run.js';
import type { ManifestEntry } from '../model/manifest.js';
import { apnscpHome, DEFAULT_APNSCP_HOME } from '../panel/cpcmd.js';

export interface PanelExportOptions {
  signal?: AbortSignal;
  log?: Logger;
}

export interface PanelExportOutcome {
  /** What goes into manifest.json (status 'ok' or 'failed'). */
  readonly entry: ManifestEntry;
  /** Set when it failed: a dump failure (ExitCode.DUMP_FAILED), for the run's outcome. */
  readonly error?: CommandError;
}

/** `/usr/bin/apnscp_php /usr/local/apnscp/bin/scripts/backup_dbs.php --force`, as configured. */
export function panelExportCommand(loaded: LoadedConfig): Command {
  const c = loaded.config.databases.apnscp;
  return cmd(c.php, [panelScript(loaded), ...c.args]);
}

export const DEFAULT_PANEL_SCRIPT = `${DEFAULT_APNSCP_HOME}/bin/scripts/backup_dbs.php`;

/** databases.apnscp.script; its default follows APNSCP_HOME (/etc/sysconfig/apnscp) when the panel lives elsewhere. */
export function panelScript(loaded: LoadedConfig, env: NodeJS.ProcessEnv = process.env): string {
  const script = loaded.config.databases.apnscp.script;
  return script === DEFAULT_PANEL_SCRIPT ? `${apnscpHome(env)}/bin/scripts/backup_dbs.php` : script;
}

/**
 * Run the panel's own exporter (databases.method apnscp/both) while we hold the backup lock, so
 * its exports land in the sites' homes before the file backup reads them. It runs to the end or
 * to databases.apnscp.timeout; a timeout kills its whole process tree (it forks dump tools).
 * Its exit-code semantics are unknown (field notes): any non-zero exit counts as a failure.
 */
export async function runPanelExports(loaded: LoadedConfig, options: PanelExportOptions = {}): Promise<PanelExportOutcome> {
  const command = panelExportCommand(loaded);
  const shown = describe(command);
  const script = panelScript(loaded);
  const startedAt = new Date();
  const base = {
    kind: 'apnscp',
    object: 'panel-export',
    database: null,
    site: '_server',
    format: 'panel',
    compression: 'internal',
    startedAt: startedAt.toISOString(),
  } as const;
  options.log?.info('running the panel\'s database exports', { command: shown });
  let error: CommandError;
  if (!existsSync(script)) {
    // php would only say "Could not open input file": name the setting to fix instead.
    error = new CommandError({ message: `${shown}: ${script} does not exist (databases.apnscp.script)`, command: shown });
  } else {
    try {
      const result = await run(command, {
        timeoutMs: durationMs(loaded.config.databases.apnscp.timeout),
        signal: options.signal,
        failureExitCode: ExitCode.DUMP_FAILED,
      });
      options.log?.info('panel database exports finished', { durationMs: result.durationMs });
      return { entry: { ...base, durationMs: result.durationMs, status: 'ok' } };
    } catch (err) {
      if (!(err instanceof CommandError)) throw err;
      error = err;
    }
  }
  const durationMsTaken = Date.now() - startedAt.getTime();
  options.log?.error('panel database exports failed', { error: error.message, command: shown, exitCode: error.exitCodeOfCommand });
  return {
    entry: {
      ...base,
      durationMs: durationMsTaken,
      status: 'failed',
      error: {
        message: error.message,
        command: error.command,
        ...(error.exitCodeOfCommand !== undefined ? { exitCode: error.exitCodeOfCommand } : {}),
        stderrTail: error.stderrTail,
      },
    },
    error,
  };
}
