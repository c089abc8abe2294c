import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { LoadedConfig } from '../config/load.js';
import { durationMs } from '../config/schema.js';
import { CommandError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import type { Logger } from '../log.js';
import { findErrorBlock } from '../panel/cpcmd.js';
import { recordWarning, warning, WarningCodes, type Warning } from '../warnings.js';
import { cmd, describe } from '../proc/command.js';
import { run } from '../proc/run.js';
import { panelScript } from './apnscp.js';

/** Where site owners' own exports land (mysql:add-backup): the owner's home, per kind. */
export const OWNER_EXPORT_DIRS = ['mysql_backups', 'pgsql_backups'] as const;

export interface OwnerExportsOutcome {
  /** False when it was not run (panel.owner_exports off, method apnscp/both, no panel). */
  readonly ran: boolean;
  /** Export files that appeared or changed during the run. */
  readonly files: readonly string[];
  readonly warnings: readonly Warning[];
  readonly durationMs: number;
}

/**
 * The exports site owners schedule for themselves (`mysql:add-backup`, into ~/mysql_backups)
 * come from the panel's nightly backup_dbs.php, which we switched off. So after our dumps we run
 * it WITHOUT --force: it exports only what the owners' schedules say is due, consistent with
 * this backup. Nothing here fails the run: every problem is a warning (the backup's own dumps
 * are ours). The panel's error block counts even with exit 0; a zero-byte export is a failed one.
 */
export async function runOwnerExports(loaded: LoadedConfig, options: { log: Logger; signal?: AbortSignal }): Promise<OwnerExportsOutcome> {
  const { log, signal } = options;
  const warnings: Warning[] = [];
  const warn = (message: string, fields: Record<string, unknown> = {}): void => recordWarning(warnings, log, warning(WarningCodes.OWNER_EXPORTS, message), fields);
  const started = Date.now();
  const script = panelScript(loaded);
  if (!existsSync(script)) {
    warn(`site owners' scheduled database exports did not run: ${script} does not exist (databases.apnscp.script; panel.owner_exports: false turns this off)`);
    return { ran: false, files: [], warnings, durationMs: 0 };
  }
  const command = cmd(loaded.config.databases.apnscp.php, [script]);
  const before = exportFiles(loaded.paths.home);
  let output = '';
  try {
    const result = await run(command, { timeoutMs: durationMs(loaded.config.databases.apnscp.timeout), signal, failureExitCode: ExitCode.DUMP_FAILED });
    output = `${result.stderr}\n${result.stdout}`;
  } catch (err) {
    if (!(err instanceof CommandError) || signal?.aborted) throw err;
    warn(`site owners' scheduled database exports failed: ${err.message}`, { command: describe(command) });
  }
  const block = findErrorBlock(output);
  if (block?.failed) warn(`site owners' scheduled database exports reported an error: ${block.message}`, { command: describe(command) });
  const after = exportFiles(loaded.paths.home);
  const files = [...after].filter(([f, sig]) => before.get(f) !== sig).map(([f]) => f).sort();
  for (const f of files) {
    if (statSync(f).size === 0) warn(`site owners' scheduled export ${f} is empty`);
  }
  log.info("site owners' scheduled database exports finished", { files: files.length, durationMs: Date.now() - started });
  return { ran: true, files, warnings, durationMs: Date.now() - started };
}

/** `<home>/siteN/shadow/home/<user>/{mysql,pgsql}_backups/*` → "size:mtime", to see what changed. */
function exportFiles(home: string): Map<string, string> {
  const out = new Map<string, string>();
  const list = (dir: string): string[] => {
    try {
      return readdirSync(dir);
    } catch {
      return [];
    }
  };
  for (const site of list(home).filter((n) => /^site\d+$/.test(n))) {
    const homes = join(home, site, 'shadow', 'home');
    for (const user of list(homes)) {
      for (const kind of OWNER_EXPORT_DIRS) {
        const dir = join(homes, user, kind);
        for (const name of list(dir)) {
          try {
            const st = statSync(join(dir, name));
            if (st.isFile()) out.set(join(dir, name), `${st.size}:${st.mtimeMs}`);
          } catch {
            // vanished meanwhile (the owner's own cleanup)
          }
        }
      }
    }
  }
  return out;
}
