#!/usr/bin/env node
// A custom backup method (the seed's "any backup software that keeps extended attributes"):
// run it as a hook after the dumps, e.g. with `engine: none`
//   hooks:
//     after_backup: [["/usr/bin/node", "/usr/lib/node_modules/apiscp-backup/dist/hooks/rsync-method.js", "/backup/web1/"]]
// It mirrors what this run backs up (APISCP_BACKUP_SOURCES: siteN shadow/info, the dumps, …
// minus APISCP_BACKUP_EXCLUDES) to TARGET (a directory or host:dir) with
// `rsync -aAXH --numeric-ids`: POSIX ACLs (Fortification), xattrs (incl. trusted.overlay.* of
// the overlay whiteouts), hard links and numeric owners (site users exist only in the site's passwd).
// Restore: `rsync -aAXH --numeric-ids TARGET/home/virtual/siteN/shadow/… /restore/` then into siteN/fst.
import { $ } from 'zx';

const target = process.argv[2];
const lines = (v: string | undefined): string[] => (v ?? '').split('\n').filter(Boolean);
const sources = lines(process.env.APISCP_BACKUP_SOURCES);
if (!target || sources.length === 0) {
  process.stderr.write('usage: rsync-method.js TARGET, run as an apiscp-backup hook (APISCP_BACKUP_SOURCES is empty)\n');
  process.exit(2);
}
// --relative keeps each absolute path below TARGET, so excludes anchor at the same "/".
const excludes = lines(process.env.APISCP_BACKUP_EXCLUDES).flatMap((e) => ['--exclude', e]);
await $`rsync -aAXH --numeric-ids --relative --delete ${excludes} ${sources} ${target}`;
