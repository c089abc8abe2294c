#!/bin/sh
# For admins who keep their own duplicity (or duply) script: dump right before the backup, do
# not back up at all when the dumps failed (duply runs its backup even when its `pre` script
# fails, so the wrapper must gate it itself), and back up exactly what `apiscp-backup paths`
# lists (sites found now, dumps dir, minus the excludes) instead of a hand-kept copy of the list.
#
# Settings (environment, with defaults):
#   NODE                  absolute node binary (cron has no nvm PATH)
#   APISCP_BACKUP         the installed dist/scripts/apiscp-backup.js
#   APISCP_BACKUP_CONFIG  config.yaml
#   DUPLICITY_TARGET      duplicity URL
#   DUPLICITY_ARCHIVE_DIR duplicity's cache;  DUPLICITY_NAME  its backup name
#   PASSPHRASE_FILE       file holding the GnuPG passphrase (exported as PASSPHRASE, never argv)
#   DUPLICITY_ARGS        extra options, split on spaces (e.g. "--full-if-older-than 1M")
set -u
NODE=${NODE:-/usr/bin/node}
APISCP_BACKUP=${APISCP_BACKUP:-/usr/lib/node_modules/apiscp-backup/dist/scripts/apiscp-backup.js}
APISCP_BACKUP_CONFIG=${APISCP_BACKUP_CONFIG:-/etc/apiscp-backup/config.yaml}
DUPLICITY_TARGET=${DUPLICITY_TARGET:-file:///backup/duplicity}
DUPLICITY_ARCHIVE_DIR=${DUPLICITY_ARCHIVE_DIR:-/var/cache/duplicity}
DUPLICITY_NAME=${DUPLICITY_NAME:-apiscp}
DUPLICITY_ARGS=${DUPLICITY_ARGS:-}

ab() { "$NODE" "$APISCP_BACKUP" --config "$APISCP_BACKUP_CONFIG" "$@"; }

ab hook pre-backup --engine duplicity || exit 1

# From here on post-backup must run whatever happens, so the run is recorded and unpinned.
finish() {
  ab hook post-backup --engine duplicity --status "$1"
  exit "$1"
}

list=$(mktemp) || finish 1
trap 'rm -f "$list"' EXIT
# duplicity filelist: "- X" excludes, "+ X" includes, first match wins: excludes first.
# `paths` failing (bad config, unreadable home) must not turn into a backup of nothing.
excludes=$(ab paths --exclude) || finish 1
sources=$(ab paths) || finish 1
[ -n "$sources" ] || finish 1
{
  printf '%s\n' "$excludes" | sed -n 's/^\(\/.*\)$/- \1/p'
  printf '%s\n' "$sources" | sed -n 's/^\(\/.*\)$/+ \1/p'
  echo '- **'
} > "$list" || finish 1

encryption=
if [ -n "${PASSPHRASE_FILE:-}" ]; then
  PASSPHRASE=$(cat "$PASSPHRASE_FILE") || finish 1
  export PASSPHRASE
elif [ -z "${PASSPHRASE:-}" ]; then
  encryption=--no-encryption
fi

# shellcheck disable=SC2086 # DUPLICITY_ARGS and $encryption are lists of words on purpose.
duplicity $DUPLICITY_ARGS $encryption --archive-dir "$DUPLICITY_ARCHIVE_DIR" --name "$DUPLICITY_NAME" \
  --include-filelist "$list" / "$DUPLICITY_TARGET"
finish $?
