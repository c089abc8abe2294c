import { ensureScopeDisabled } from '../../panel/scope.js';
import { getEngine } from '../../engine/index.js';
import { runJob } from '../../job/backup-job.js';
import { checkStatus } from '../../job/status-check.js';
import type { CommandContext } from '../context.js';
import { ExitCode } from '../../exit-codes.js';
import { finish } from './outcome.js';

/**
 * The cron.daily entry. Engines we drive (duplicity, restic, borg, none) run the whole job here.
 * For Bacula, whose director schedules the job and calls our hook, the nightly entry is a
 * watchdog: it keeps the panel's own exports off and complains when backups stopped.
 * Silent when healthy; cron mails whatever is printed.
 */
export default async function nightly(ctx: CommandContext): Promise<number> {
  const engine = getEngine(ctx.loaded.config.engine);
  if (engine.drivesBackup || engine.name === 'none') {
    return finish(ctx, await runJob({ ...ctx, engine: engine.name, trigger: 'cron' }));
  }
  // A panel error (cpcmd failing, an unknown answer) must not stop the watchdog from judging the
  // backups: it is reported, and exits PANEL when the backups themselves are fine.
  let panelError: string | undefined;
  const warning = await ensureScopeDisabled(ctx.loaded, { log: ctx.log, signal: ctx.signal }).catch((err: unknown) => {
    panelError = err instanceof Error ? err.message : String(err);
    return undefined;
  });
  if (warning) process.stderr.write(`warning: ${warning.message}\n`);
  if (panelError) process.stderr.write(`error: cannot keep the panel's nightly exports off: ${panelError}\n`);
  const verdict = await checkStatus(ctx.loaded, ctx.log, ctx.signal);
  // Cron is the only place a Bacula admin reads: the last job's warnings are mailed too (exit 0).
  if (!verdict.ok || verdict.severity === 'WARNING') process.stderr.write(verdict.lines.join('\n') + '\n');
  return verdict.ok && panelError ? ExitCode.PANEL : verdict.exitCode;
}
