import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../errors.js';
import type { LoadedConfig } from '../config/load.js';
import type { Logger } from '../log.js';
import type { KindName, ThrowawayServer } from '../model/kind.js';
import { kindByName } from '../kinds/index.js';
import { cmd, type Command } from '../proc/command.js';
import { resolveTool } from '../proc/which.js';

/** The unprivileged OS user verify's throwaway servers run as (created on first use: a system user, no login). */
export const VERIFY_OS_USER = 'apiscp-backup-verify';

/** Where live servers keep their sockets and data: covered (empty, mode 000) inside the namespace. */
const LIVE_DIRS = ['/run/postgresql', '/var/run/postgresql', '/run/mysqld', '/var/run/mysqld', '/var/lib/mysql', '/var/lib/pgsql', '/var/lib/postgresql', '/home/virtual'];

/**
 * `command` (the start of a kind's server, carrying its uid/gid) in new mount and network
 * namespaces: no TCP to anything (only a loopback that is down), the live servers' directories
 * covered, then the switch to the command's user. The server it leaves behind stays in them.
 */
function isolated(command: Command, ownDir: string): Command {
  const unshare = resolveTool('unshare', 'util-linux', 'util-linux');
  const setpriv = resolveTool('setpriv', 'util-linux', 'util-linux');
  // A verify.work_dir below one of them (unusual) keeps that one visible: its own files must be.
  const hidden = LIVE_DIRS.filter((d) => ownDir !== d && !ownDir.startsWith(`${d}/`));
  const script = [
    'for d in ' + hidden.map((d) => `'${d}'`).join(' ') + '; do',
    '  if [ -d "$d" ] && [ ! -L "$d" ]; then mount -t tmpfs -o size=4k,mode=000 asb-verify-hidden "$d" || exit 1; fi',
    'done',
    'exec "$@"',
  ].join('\n');
  const user = ['--reuid', String(command.uid), '--regid', String(command.gid), '--clear-groups'];
  return cmd(unshare, ['--mount', '--net', '--fork', '--propagation', 'private', '--', '/bin/sh', '-c', script, 'asb-verify', setpriv, ...user, '--', command.file, ...command.args], {
    env: command.env,
    cwd: command.cwd,
  });
}

/**
 * Throwaway servers for verify, started on first use by the dump's kind (one per kind and
 * throwawayKey: a major version): private data directories and sockets below one directory in
 * `verify.work_dir`, no TCP, thrown away by destroy(). Loads are made fast rather than durable
 * (nothing here must survive a crash).
 */
export class ThrowawayServers {
  private readonly dir: string;
  readonly workDir: string;
  private readonly servers = new Map<string, Promise<ThrowawayServer>>();

  /** The config verify runs with: the restore sessions that load dumps here read it (restore.connections…). */
  readonly loaded?: LoadedConfig;

  constructor(workDir: string, readonly log: Logger, loaded?: LoadedConfig) {
    this.loaded = loaded;
    this.workDir = workDir;
    try {
      this.dir = mkdtempSync(join(workDir, 'asb-verify-'));
    } catch (err) {
      throw new ConfigError(`verify.work_dir ${workDir}: cannot create the throwaway servers' directory there: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, undefined, 'verify.work_dir');
    }
    chmodSync(this.dir, 0o755); // the servers' OS user must reach its data directory below
  }

  /**
   * The throwaway server a dump of `kind` from a server of `serverVersion` loads into, as the
   * kind's verifyLoad takes it (one object per server: the kind remembers what it held at first).
   */
  serverFor(kind: KindName, serverVersion: string): Promise<ThrowawayServer> {
    const k = kindByName(kind);
    const key = `${k.name}-${k.throwawayKey(serverVersion)}`;
    let server = this.servers.get(key);
    if (!server) {
      server = k.startThrowaway({ baseDir: this.dir, serverVersion, osUser: VERIFY_OS_USER, isolate: (start) => isolated(start, this.dir) });
      this.servers.set(key, server);
    }
    return server;
  }

  async destroy(): Promise<void> {
    await Promise.allSettled([...this.servers.values()].map(async (p) => (await p).destroy()));
    rmSync(this.dir, { recursive: true, force: true });
    this.log.debug('verify: throwaway servers removed', { dir: this.dir });
  }
}
