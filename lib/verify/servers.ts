import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BackupError, ConfigError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import type { LoadedConfig } from '../config/load.js';
import type { Logger } from '../log.js';
import type { KindName, ScratchServer, ServerTarget } from '../model/kind.js';
import { ensureServiceUser, startMariadb, type MariadbServer } from '../throwaway/mariadb.js';
import { startPostgres, type PostgresServer } from '../throwaway/postgres.js';
import { cmd, type Command } from '../proc/command.js';
import { resolveTool } from '../proc/which.js';

/** "MariaDB 10.11" from "10.11.6-MariaDB-0+deb12u1"; "MySQL 8.0" from "8.0.36". */
export function mysqlMajor(version: string): string {
  const m = /^(\d+)\.(\d+)/.exec(version.trim());
  return `${/mariadb/i.test(version) ? 'MariaDB' : 'MySQL'} ${m ? `${m[1]}.${m[2]}` : version}`;
}

/** "15" from "15.14 (Debian 15.14-0+deb12u1)"; "9.6" from "9.6.24" (two-part majors before 10). */
export function postgresMajor(version: string): string {
  const m = /^(\d+)(?:\.(\d+))?/.exec(version.trim());
  if (!m) return version;
  return Number(m[1]) >= 10 ? m[1]! : `${m[1]}.${m[2] ?? '0'}`;
}

/** The unprivileged OS user verify's throwaway servers run as (created on first use: a system user, no login). */
export const VERIFY_OS_USER = 'apiscp-backup-verify';

/** Where live servers keep their sockets and data: covered (empty, mode 000) inside the namespace. */
const LIVE_DIRS = ['/run/postgresql', '/var/run/postgresql', '/run/mysqld', '/var/run/mysqld', '/var/lib/mysql', '/var/lib/pgsql', '/var/lib/postgresql', '/home/virtual'];

/**
 * `command` (pg_ctl start, carrying its uid/gid) in new mount and network namespaces: no TCP to
 * anything (only a loopback that is down), the live servers' directories covered, then the
 * switch to the command's user. The postmaster pg_ctl leaves behind stays in them.
 */
function isolated(command: Command): Command {
  const unshare = resolveTool('unshare', 'util-linux', 'util-linux');
  const setpriv = resolveTool('setpriv', 'util-linux', 'util-linux');
  // A verify.work_dir below one of them (unusual) keeps that one visible: the data must be.
  const dataDir = command.args[command.args.indexOf('-D') + 1] ?? '';
  const hidden = LIVE_DIRS.filter((d) => dataDir !== d && !dataDir.startsWith(`${d}/`));
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
 * Throwaway servers for verify, started on first use: private data directories and sockets
 * below one directory in `verify.work_dir`, no TCP, thrown away by destroy(). Loads are made
 * fast rather than durable (nothing here must survive a crash).
 */
export class ThrowawayServers {
  private readonly dir: string;
  readonly workDir: string;
  private mysql?: Promise<MariadbServer>;
  private readonly postgres = new Map<string, Promise<PostgresServer>>();

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
    chmodSync(this.dir, 0o755); // the postgres user must reach its data directory below
  }

  /**
   * The throwaway server a dump of `kind` from a server of `serverVersion` loads into, as the
   * kind's verifyLoad takes it (one object per server: the kind remembers what it held at first).
   */
  async serverFor(kind: KindName, serverVersion: string): Promise<ScratchServer> {
    const start: Record<KindName, () => Promise<ScratchServer>> = {
      mysql: async () => this.scratchOf(await this.mysqlFor(serverVersion), (server) => this.mysqlTarget(server)),
      postgresql: async () => this.scratchOf(await this.postgresFor(serverVersion), (server) => server.target),
    };
    return start[kind]();
  }

  private readonly scratch = new WeakMap<object, ScratchServer>();
  private scratchOf<S extends { sql(statement: string, database?: string): Promise<string> }>(server: S, target: (server: S) => ServerTarget): ScratchServer {
    let s = this.scratch.get(server);
    if (!s) {
      s = { target: target(server), sql: (statement, database) => server.sql(statement, database) };
      this.scratch.set(server, s);
    }
    return s;
  }

  /** A MariaDB/MySQL server of the dump server's flavour and major version. */
  async mysqlFor(serverVersion: string): Promise<MariadbServer> {
    // Customers' dumps run here: as an OS user of its own (root only when we are not root, as in
    // development), in a private directory, file access confined to it, events off.
    this.mysql ??= startMariadb({
      baseDir: this.dir,
      ...(process.getuid?.() === 0 ? { runAs: VERIFY_OS_USER } : {}),
      serverArgs: ['--innodb-buffer-pool-size=256M', '--innodb-flush-log-at-trx-commit=0', '--innodb-doublewrite=0', '--event-scheduler=OFF'],
    });
    const server = await this.mysql;
    const want = mysqlMajor(serverVersion);
    const have = mysqlMajor(server.version);
    if (want !== have) throw new BackupError(`the dump comes from ${want} but this machine's server is ${have}: cannot load it the same way`, ExitCode.MISSING_DEPENDENCY);
    return server;
  }

  /**
   * Where a restore session reaches the MariaDB server: its socket as root, with an empty password
   * file, so nothing of the live server's configuration (defaults_file's host, password) applies.
   */
  mysqlTarget(server: MariadbServer): ServerTarget {
    const empty = join(this.dir, 'empty-password');
    writeFileSync(empty, '', { mode: 0o600 });
    return { socket: server.socket, user: 'root', password_file: empty };
  }

  /**
   * A PostgreSQL server of the dump server's major version (its own initdb and pg_restore). It
   * runs as an OS user of its own, not `postgres` (who owns the live cluster's files): what a
   * dump gets to run as the superuser there (COPY … TO PROGRAM) runs as nobody of importance,
   * in a network namespace of its own and with the live servers' socket and data directories
   * covered by empty mounts.
   */
  async postgresFor(serverVersion: string): Promise<PostgresServer> {
    const major = postgresMajor(serverVersion);
    let server = this.postgres.get(major);
    if (!server) {
      server = ensureServiceUser(VERIFY_OS_USER).then(() => startPostgres({ baseDir: join(this.dir, `pg${major}`), major, osUser: VERIFY_OS_USER, wrapStart: (c) => isolated(c) }));
      this.postgres.set(major, server);
    }
    return server;
  }

  async destroy(): Promise<void> {
    const all = [...(this.mysql ? [this.mysql] : []), ...this.postgres.values()];
    await Promise.allSettled(all.map(async (p) => (await p).destroy()));
    rmSync(this.dir, { recursive: true, force: true });
    this.log.debug('verify: throwaway servers removed', { dir: this.dir });
  }
}
