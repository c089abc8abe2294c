import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MissingDependencyError } from '../errors.js';
import { cmd, type Command } from '../proc/command.js';
import { run, type RunOptions, type RunResult } from '../proc/run.js';
import { whichSystem } from '../proc/which.js';
import type { PinnedDir } from './pinned.js';

/**
 * Run a tool that writes into a tenant's tree (rsync, restorecon) where the tenant's symlinks can
 * lead nowhere else: a private mount namespace whose root is an empty tmpfs holding only
 *   - the live directory, read-write, at its own absolute path (so restorecon sees the real path);
 *     checked to be the very directory we hold open (pinned.ts),
 *   - this restore's staging directory, read-only, at its own path,
 *   - /usr, /etc and the library directories, read-only (the tool and its libraries).
 * No /proc, /dev, /home or /var: a symlink to /VICTIM, ../../site1 or /proc/1/root resolves
 * inside the jail to nothing, or to a read-only mount (EROFS). `..` at the root of a mount goes
 * to the jail's tmpfs, never to the host's parent. So whatever the tenant swaps while the tool
 * runs, the tool can only write inside the site's own directory. The namespace (and with it every
 * mount) goes away when the tool exits.
 */
const SCRIPT = `set -eu
PATH=/usr/sbin:/usr/bin:/sbin:/bin
jail=$1 rw_src=$2 rw_at=$3 ro=$4 chroot=$5
shift 5
mount -t tmpfs -o mode=0755,nosuid,nodev apiscp-backup-jail "$jail"
for d in /usr /etc /bin /sbin /lib /lib32 /lib64 /libx32; do
  if [ -L "$d" ]; then ln -s "$(readlink "$d")" "$jail$d"
  elif [ -d "$d" ]; then mkdir "$jail$d"; mount --bind "$d" "$jail$d"; mount -o remount,bind,ro "$jail$d"
  fi
done
if [ -d /sys/fs/selinux ]; then mkdir -p "$jail/sys/fs/selinux"; mount --bind /sys/fs/selinux "$jail/sys/fs/selinux"; mount -o remount,bind,ro "$jail/sys/fs/selinux"; fi
mkdir -p "$jail$ro"; mount --bind "$ro" "$jail$ro"; mount -o remount,bind,ro "$jail$ro"
mkdir -p "$jail$rw_at"; mount --bind "$rw_at" "$jail$rw_at"
# mount(2) cannot bind a directory of another mount namespace from its fd, so the path is walked
# again: what got bound must be the directory we hold open (same device and inode; held open,
# that inode cannot be reused), or someone swapped a directory on the way.
if [ "$(stat -c %d:%i "$jail$rw_at/")" != "$(stat -L -c %d:%i "$rw_src")" ]; then
  echo "apiscp-backup: $rw_at changed while the restore opened it; refusing to write into it" >&2; exit 111
fi
exec "$chroot" "$jail" "$@"
`;

export interface Jail {
  /** An empty directory of ours (inside the private staging directory) to build the jail's root on. */
  readonly base: string;
  /** The live directory, pinned; bound read-write at `at`. */
  readonly live: PinnedDir;
  readonly at: string;
  /** Read-only inside (the staging directory). */
  readonly readOnly: string;
}

let jails = 0;

/** `command` (an absolute path under /usr or /bin…) run inside the jail; see above. */
export async function runConfined(jail: Jail, command: Command, options: RunOptions = {}): Promise<RunResult> {
  const unshare = whichSystem('unshare');
  const chroot = whichSystem('chroot');
  if (!unshare) throw new MissingDependencyError('unshare', 'util-linux', 'util-linux');
  if (!chroot) throw new MissingDependencyError('chroot', 'coreutils', 'coreutils');
  const root = join(jail.base, `jail-${++jails}`);
  await mkdir(root, { mode: 0o700 });
  // The script as a file in our private directory: error messages show its name, not its text.
  const script = `${root}.sh`;
  await writeFile(script, SCRIPT, { mode: 0o600 });
  const argv = ['-m', '--propagation', 'private', '--', '/bin/sh', script, root, jail.live.forChild(), jail.at, jail.readOnly, chroot, command.file, ...command.args];
  return run(cmd(unshare, argv, { env: command.env }), options);
}
