import { join, resolve } from 'node:path';
import { UsageError } from '../../errors.js';
import { absoluteProgram } from './bacula-config.js';
import type { EngineName } from '../../engine/types.js';
import { install as installToolkit, uninstall as uninstallToolkit } from '../../install/install.js';
import type { CommandContext } from '../context.js';
import { packagePaths } from '../../package-paths.js';

/** dist/cron.daily/apiscp-backup.js of this installation: what the cron entry execs. */
export function nightlyEntry(): string {
  return join(packagePaths().dist, 'cron.daily', 'apiscp-backup.js');
}

export default async function install(ctx: CommandContext, opts: Record<string, unknown>): Promise<number> {
  const tls = [opts.tlsDir, opts.client, opts.director];
  if (tls.some((v) => v !== undefined) && !tls.every((v) => typeof v === 'string')) throw new UsageError('--tls-dir, --client and --director go together (the file daemon\'s TLS and PKI)');
  const result = await installToolkit({
    baculaTls: typeof opts.tlsDir === 'string' ? { dir: resolve(opts.tlsDir), client: opts.client as string, director: opts.director as string } : undefined,
    root: ctx.options.root,
    config: ctx.options.config,
    engine: opts.engine as EngineName | undefined,
    // Written into the cron entry and the wrapper, which run from another directory.
    node: absoluteProgram(opts.node) ?? process.execPath,
    entry: nightlyEntry(),
    dryRun: Boolean(opts.dryRun),
    log: ctx.log,
  });
  ctx.out(ctx.options.json ? JSON.stringify(result, null, 2) : result.text);
  return 0;
}

export async function uninstall(ctx: CommandContext, opts: Record<string, unknown>): Promise<number> {
  const result = await uninstallToolkit({
    root: ctx.options.root,
    config: ctx.options.config,
    purge: Boolean(opts.purge),
    log: ctx.log,
  });
  ctx.out(ctx.options.json ? JSON.stringify(result, null, 2) : result.text);
  return 0;
}
