import { writeFileSync } from 'node:fs';
import { getEngine } from '../../engine/index.js';
import { authorizedKeysLine, borgRemoteSetup, defaultSshKey, ensureSshKey, resticRemoteSetup } from '../../engine/remote-setup.js';
import { parseSshRemote } from '../../engine/remote.js';
import { expandBackupPaths } from '../../plan/paths.js';
import { UsageError } from '../../errors.js';
import type { CommandContext } from '../context.js';
import { engineOf } from './outcome.js';
import { engineTarget } from '../plan-view.js';

/**
 * Once per server, before the first backup: restic and borg need their repository created (a
 * second call says so, exit 0). With --remote it prints (and with --write stores) what the backup
 * host needs instead; the repository is created afterwards by a plain `repo-init` (docs/offsite.md).
 */
export default async function repoInit(ctx: CommandContext, opts: Record<string, unknown>): Promise<number> {
  const engine = getEngine(engineOf(ctx, opts));
  if (typeof opts.remote === 'string') return remoteSetup(ctx, engine.name, opts.remote, opts.write as string | undefined);
  if (!engine.init) throw new UsageError(`engine ${engine.name} has no repository to create`);
  const { sources, excludes } = await expandBackupPaths(ctx.loaded.paths);
  const ctx2 = { loaded: ctx.loaded, log: ctx.log, signal: ctx.signal, sources, excludes };
  // Not engine.check(): it fails on the very thing this command creates.
  if (engine.initialised && (await engine.initialised(ctx2)) === true) {
    ctx.out(`${engineTarget(ctx.loaded, engine.name)} is already initialised: nothing to do`);
    return 0;
  }
  ctx.out(await engine.init(ctx2));
  return 0;
}

async function remoteSetup(ctx: CommandContext, engine: string, url: string, write: string | undefined): Promise<number> {
  if (engine === 'borg') {
    const remote = parseSshRemote(url);
    if (!remote) throw new UsageError(`--remote ${url}: expected ssh://user@host[:port]/absolute/path`);
    const key = ctx.loaded.config.borg.ssh_key ?? defaultSshKey(ctx.loaded);
    const pub = await ensureSshKey(key);
    // The authorized_keys line alone: what the admin copies to the backup host.
    if (write) writeFileSync(write, authorizedKeysLine(remote, pub) + '\n', { mode: 0o644 });
    ctx.out(borgRemoteSetup(ctx.loaded, url, key, pub));
    return 0;
  }
  if (engine === 'restic') {
    const text = resticRemoteSetup(ctx.loaded, url);
    if (write) writeFileSync(write, text, { mode: 0o644 });
    ctx.out(text);
    return 0;
  }
  throw new UsageError(`--remote: engine ${engine} has no remote set-up here (borg: ssh://, restic: rest:https://; Bacula: docs/offsite.md)`);
}
