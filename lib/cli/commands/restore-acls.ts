import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { restoreAcls } from '../../engine/acl-restore.js';
import { withSymlinksParked } from '../../restore/apply.js';
import type { CommandContext } from '../context.js';

/**
 * After a duplicity restore into DIR: put POSIX ACLs and xattrs back from the sidecar. Counts
 * what was applied; paths of the sidecar missing under DIR are reported, and a DIR where none
 * exists is an error naming the directory the sidecar expects (restoreAcls throws).
 */
export default async function restoreAclsCommand(ctx: CommandContext, opts: Record<string, unknown>): Promise<number> {
  const from = opts.from as string;
  // setfacl/setfattr go by path: a symlink in the tree (a tenant's, restored as it was) would take
  // them elsewhere, so every symlink is parked aside while they run (docs/security.md).
  const parking = join(from, `.apiscp-backup-parked-${process.pid}`);
  const result = await withSymlinksParked([from], parking, () => restoreAcls(from, opts.sidecar as string | undefined)).finally(() => rm(parking, { recursive: true, force: true }));
  for (const w of result.warnings) ctx.log.warn(w);
  const missing = result.missingAcl + result.missingXattr;
  ctx.out(
    ctx.options.json
      ? JSON.stringify(result, null, 2)
      : `re-applied ACLs to ${result.aclFiles} and xattrs to ${result.xattrFiles} paths under ${from} (from ${result.sidecar})` +
          (missing ? `; ${result.missingAcl} ACL and ${result.missingXattr} xattr entries skipped: their paths are not under ${from} (a partial restore?), e.g. ${result.warnings[0]?.replace(/^not in the restored tree: /, '') ?? ''}` : ''),
  );
  return 0;
}
