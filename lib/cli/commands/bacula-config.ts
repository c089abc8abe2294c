import { fileURLToPath } from 'node:url';
import { renderBaculaConfig } from '../../engine/bacula.js';
import { backupGlobs } from '../../plan/paths.js';
import type { CommandContext } from '../context.js';

/** Print the FileSet + Job fragment an admin appends to bacula-dir.conf. */
export default async function baculaConfig(ctx: CommandContext, opts: Record<string, unknown>): Promise<number> {
  const b = ctx.loaded.config.bacula;
  const { paths } = ctx.loaded;
  ctx.out(
    renderBaculaConfig({
      client: (opts.client as string | undefined) ?? b.client,
      fileset: (opts.fileset as string | undefined) ?? b.fileset,
      job: (opts.job as string | undefined) ?? b.job,
      jobdefs: (opts.jobdefs as string | undefined) ?? b.jobdefs,
      node: (opts.node as string | undefined) ?? process.execPath,
      entry: (opts.entry as string | undefined) ?? installedEntry(),
      ...backupGlobs(paths),
      configFile: ctx.loaded.file,
    }),
  );
  return 0;
}

/** dist/scripts/apiscp-backup.js of this installation. */
export function installedEntry(): string {
  return fileURLToPath(new URL('../../../scripts/apiscp-backup.js', import.meta.url));
}
