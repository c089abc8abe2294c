import { restoreAcls } from '../../engine/acl-sidecar.js';
import type { CommandContext } from '../context.js';

/** After a duplicity restore into DIR: put POSIX ACLs and xattrs back from the sidecar. */
export default async function restoreAclsCommand(ctx: CommandContext, opts: Record<string, unknown>): Promise<number> {
  const result = await restoreAcls(opts.from as string, opts.sidecar as string | undefined);
  for (const w of result.warnings) ctx.log.warn(w);
  ctx.out(
    ctx.options.json
      ? JSON.stringify(result, null, 2)
      : `re-applied ACLs to ${result.aclFiles} and xattrs to ${result.xattrFiles} paths under ${opts.from as string} (from ${result.sidecar})`,
  );
  return 0;
}
