import { CommandError, PanelError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import type { Logger } from '../log.js';
import { cmd, describe } from '../proc/command.js';
import { run } from '../proc/run.js';
import { isExecutable, which } from '../proc/which.js';
import { parseBoolean, type Cpcmd } from './cpcmd.js';

/**
 * How this panel switches its nightly database exports on and off.
 * - 'scope': `backups.automatic-database-exports` (panels from 2022 on; Backups.md).
 * - 'bootstrapper': older panels answer "Unknown admin setting" to that scope; their route is
 *   the Bootstrapper variable `manual_database_backups` (true = exports off) followed by
 *   `upcp -sb apnscp/crons`, which rewrites the panel's cron jobs (the add-in's Bacula.md).
 */
export type ExportRoute = 'scope' | 'bootstrapper';

export const EXPORT_SCOPE = 'backups.automatic-database-exports';
export const BOOTSTRAPPER_SCOPE = 'cp.bootstrapper';
export const BOOTSTRAPPER_VAR = 'manual_database_backups';
/** The Bootstrapper role that (re)writes the panel's cron jobs, 10backup_dbs among them. */
export const CRONS_ROLE = 'apnscp/crons';

export interface ExportSetting {
  readonly route: ExportRoute;
  /** true: the panel exports every night from anacron. */
  readonly enabled: boolean;
}

const UNKNOWN_SETTING = /Unknown admin setting/i;

/**
 * Read the exports setting, finding the route. An unparsable answer, or `null` from the scope,
 * is "unknown" and throws: reading it as "off" would let the panel go on racing our dumps
 * unnoticed, reading it as "on" would record a wrong value for uninstall.
 */
export async function readExports(panel: Cpcmd): Promise<ExportSetting> {
  let out: string;
  try {
    out = await panel.call(['-o', 'json', 'scope:get', EXPORT_SCOPE]);
  } catch (err) {
    if (!(err instanceof PanelError && UNKNOWN_SETTING.test(err.message))) throw err;
    // Older panel: the Bootstrapper route. Knowing neither, the first answer is the one to show.
    return readBootstrapper(panel).catch((second: unknown) => {
      if (second instanceof PanelError && UNKNOWN_SETTING.test(second.message)) {
        throw new PanelError(`${err.message} (and ${BOOTSTRAPPER_SCOPE} is unknown too: no route to switch the nightly exports off)`, err.context);
      }
      throw second;
    });
  }
  const value = parseScopeValue(out);
  if (value === undefined) {
    throw new PanelError(`cpcmd scope:get ${EXPORT_SCOPE} answered ${JSON.stringify(out.slice(0, 200))}: cannot tell whether the panel's nightly exports are on; nothing changed`, { output: out.slice(0, 500) });
  }
  return { route: 'scope', enabled: value };
}

async function readBootstrapper(panel: Cpcmd): Promise<ExportSetting> {
  const out = await panel.call(['-o', 'json', 'scope:get', BOOTSTRAPPER_SCOPE, BOOTSTRAPPER_VAR]);
  // An unset Bootstrapper variable reads null: its default, false, i.e. the exports run (inferred
  // from the role's default; no source prints it).
  const manual = out.trim() === 'null' ? false : parseScopeValue(out);
  if (manual === undefined) {
    throw new PanelError(`cpcmd scope:get ${BOOTSTRAPPER_SCOPE} ${BOOTSTRAPPER_VAR} answered ${JSON.stringify(out.slice(0, 200))}: cannot tell whether the panel's nightly exports are on; nothing changed`, { output: out.slice(0, 500) });
  }
  return { route: 'bootstrapper', enabled: !manual };
}

/** A scope value: true/1, false/0/"" (PHP's echo of false); `null` and anything else: unknown. */
export function parseScopeValue(text: string): boolean | undefined {
  const last = text.trim().split('\n').at(-1)?.trim() ?? '';
  if (last === 'null') return undefined;
  return parseBoolean(last);
}

export interface SetExportsOptions {
  /** `upcp` for the Bootstrapper route (see locateUpcp). */
  readonly upcp?: string;
  readonly upcpTimeoutMs: number;
  readonly signal?: AbortSignal;
  readonly log?: Logger;
}

/** Switch the exports on or off by the route, then read back: a setting that did not take throws. */
export async function setExports(panel: Cpcmd, route: ExportRoute, enabled: boolean, options: SetExportsOptions): Promise<void> {
  if (route === 'scope') {
    await panel.call(['scope:set', EXPORT_SCOPE, String(enabled)]);
  } else {
    await panel.call(['scope:set', BOOTSTRAPPER_SCOPE, BOOTSTRAPPER_VAR, String(!enabled)]);
    if (!options.upcp) {
      throw new PanelError(`set ${BOOTSTRAPPER_SCOPE} ${BOOTSTRAPPER_VAR}=${!enabled}, but upcp was not found to apply it (run \`upcp -sb ${CRONS_ROLE}\` by hand, or set panel.upcp)`);
    }
    const command = cmd(options.upcp, ['-sb', CRONS_ROLE]);
    options.log?.info(`applying the panel's cron change: ${describe(command)}`);
    try {
      await run(command, { timeoutMs: options.upcpTimeoutMs, signal: options.signal, failureExitCode: ExitCode.PANEL });
    } catch (err) {
      if (!(err instanceof CommandError)) throw err;
      throw new PanelError(`${err.message} (${BOOTSTRAPPER_VAR} is now ${!enabled}; re-run \`upcp -sb ${CRONS_ROLE}\` by hand)`, { command: describe(command), stderrTail: err.stderrTail });
    }
  }
  const after = await readExports(panel);
  if (after.enabled !== enabled) {
    throw new PanelError(`the panel's nightly exports still read ${after.enabled ? 'on' : 'off'} after switching them ${enabled ? 'on' : 'off'} (${route === 'scope' ? EXPORT_SCOPE : `${BOOTSTRAPPER_SCOPE} ${BOOTSTRAPPER_VAR}`})`);
  }
}

export const UPCP_PATHS = ['/usr/local/sbin/upcp'] as const;

/**
 * upcp: `panel.upcp` when it is a path, else $UPCP, `upcp` on PATH, /usr/local/sbin/upcp, then
 * `<APNSCP_HOME>/bin/upcp` (where it lives is not documented: all are guesses but the PATH one).
 */
export function locateUpcp(configured: string, home: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (configured !== 'auto') {
    const found = which(configured, env.PATH);
    if (!found) throw new PanelError(`upcp not found or not executable: ${configured} (panel.upcp)`);
    return found;
  }
  if (env.UPCP) return which(env.UPCP, env.PATH);
  return which('upcp', env.PATH) ?? [...UPCP_PATHS, `${home}/bin/upcp`].find((p) => isExecutable(p));
}
