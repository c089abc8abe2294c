import { hostname } from 'node:os';
import type { LoadedConfig } from '../../config/load.js';
import { borgPrune } from '../../engine/borg.js';
import { resticPrune } from '../../engine/restic.js';
import { backupHostPrune } from '../../engine/remote-setup.js';
import { isRemoteRepository } from '../../engine/remote.js';
import { UsageError } from '../../errors.js';
import type { CommandContext } from '../context.js';
import { engineOf } from './outcome.js';

/**
 * Retention for append-only repositories, meant for the backup host (docs/offsite.md): `--print`
 * on the ApisCP server shows the backup host's cron line with this server's keep-* settings;
 * on the backup host `prune --repository /local/path --client NAME` runs it. It refuses to prune
 * an append-only repository through its remote URL: the client never deletes history.
 */
export default async function prune(ctx: CommandContext, opts: Record<string, unknown>): Promise<number> {
  const engine = engineOf(ctx, opts);
  if (engine !== 'borg' && engine !== 'restic') throw new UsageError(`prune: engine ${engine} has no repository retention here (borg, restic)`);
  const repository = opts.repository as string | undefined;
  const client = (opts.client as string | undefined) ?? hostname();
  if (opts.print) {
    ctx.out(backupHostPrune(ctx.loaded, engine, repository, client));
    return 0;
  }
  const section = ctx.loaded.config[engine];
  const target = repository ?? section.repository;
  if (section.append_only && (!repository || isRemoteRepository(repository))) {
    throw new UsageError(`${engine}.append_only: ${target ?? 'the repository'} is pruned on the backup host, not through its remote URL (apiscp-backup prune --print)`);
  }
  const loaded: LoadedConfig = { ...ctx.loaded, config: { ...ctx.loaded.config, [engine]: { ...section, repository: target, append_only: false } } };
  const ectx = { loaded, log: ctx.log, signal: ctx.signal, sources: [], excludes: [] };
  if (engine === 'borg') await borgPrune(ectx, client);
  else await resticPrune(ectx, client);
  ctx.out(`pruned ${client}'s ${engine} backups in ${target}`);
  return 0;
}
