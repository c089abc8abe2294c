// After tsc: make the entry points executable (tsc keeps the shebang but not the mode).
import { chmodSync, existsSync } from 'node:fs';
for (const f of ['dist/scripts/apiscp-backup.js', 'dist/cron.daily/apiscp-backup.js', 'dist/hooks/pre-backup.js', 'dist/hooks/post-backup.js', 'dist/hooks/rsync-method.js', 'dist/hooks/dumps-handoff.js', 'dist/hooks/duplicity-wrapper.zx.js']) {
  if (existsSync(f)) chmodSync(f, 0o755);
}
