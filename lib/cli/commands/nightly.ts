import { ensureScopeDisabled } from '../../panel/scope.js';
import { getEngine } from '../../engine/index.js';
import { runJob } from '../../job/backup-job.js';
import { checkStatus } from '../../job/status-check.js';
import type { CommandContext } from '../context.js';
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
  const warning = await ensureScopeDisabled(ctx.loaded, { log: ctx.log, signal: ctx.signal });
  if (warning) process.stderr.write(`warning: ${warning}\n`);
  const verdict = await checkStatus(ctx.loaded, ctx.log, ctx.signal);
  // Cron is the only place a Bacula admin reads: the last job's warnings are mailed too (exit 0).
  if (!verdict.ok || verdict.severity === 'WARNING') process.stderr.write(verdict.lines.join('\n') + '\n');
  return verdict.exitCode;
}
