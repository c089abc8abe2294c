#!/bin/sh
# Example for admins who keep their own duplicity (or duply) script: dump right before the
# backup, and do not back up at all when the dumps failed (duply runs its backup even when its
# `pre` script fails, so the wrapper must gate it itself).
set -u
NODE=/usr/bin/node
APISCP_BACKUP=/usr/lib/node_modules/apiscp-backup/dist/scripts/apiscp-backup.js

"$NODE" "$APISCP_BACKUP" hook pre-backup --engine duplicity || exit 1
duplicity --archive-dir /var/cache/duplicity --name apiscp \
  --include /home/virtual --include /var/backup/apiscp-backup --exclude '**' \
  / "file:///backup/duplicity"
status=$?
"$NODE" "$APISCP_BACKUP" hook post-backup --engine duplicity --status "$status"
exit "$status"
