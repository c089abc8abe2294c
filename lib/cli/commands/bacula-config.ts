import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../../errors.js';
import { renderBaculaClient, renderBaculaConfig } from '../../engine/bacula.js';
import type { CommandContext } from '../context.js';

/**
 * Print the FileSet + Job fragment an admin appends to bacula-dir.conf; with --address also the
 * Client resource (a fleet director: one such fragment per ApisCP server).
 */
export default async function baculaConfig(ctx: CommandContext, opts: Record<string, unknown>): Promise<number> {
  const b = ctx.loaded.config.bacula;
  const { paths } = ctx.loaded;
  const client = (opts.client as string | undefined) ?? b.client;
  const address = opts.address as string | undefined;
  const passwordFile = opts.passwordFile as string | undefined;
  if ((address === undefined) !== (passwordFile === undefined)) throw new ConfigError('--address and --password-file go together (the Client resource needs both)', undefined);
  const clientResource =
    address === undefined
      ? ''
      : renderBaculaClient({ client, address, fdPort: opts.fdPort === undefined ? undefined : Number(opts.fdPort), password: readPassword(passwordFile!) }) + '\n';
  ctx.out(
    clientResource +
    renderBaculaConfig({
      client,
      fileset: (opts.fileset as string | undefined) ?? b.fileset,
      job: (opts.job as string | undefined) ?? b.job,
      jobdefs: (opts.jobdefs as string | undefined) ?? b.jobdefs,
      node: (opts.node as string | undefined) ?? process.execPath,
      entry: (opts.entry as string | undefined) ?? installedEntry(),
      sources: [...paths.include, paths.dumpsDir],
      excludes: [...paths.exclude, `${paths.dumpsDir}/*.inprogress`],
      configFile: ctx.loaded.file,
    }),
  );
  return 0;
}

/** The file daemon's password: the first line of a file (bacula-fd.conf's Director Password). */
function readPassword(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read --password-file ${file}: ${(err as Error).message}`, undefined);
  }
  const password = text.split('\n')[0]!.trim();
  if (!password) throw new ConfigError(`--password-file ${file} is empty`, undefined);
  return password;
}

/** dist/scripts/apiscp-backup.js of this installation. */
export function installedEntry(): string {
  return fileURLToPath(new URL('../../../scripts/apiscp-backup.js', import.meta.url));
}
