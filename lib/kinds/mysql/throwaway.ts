import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BackupError } from '../../errors.js';
import { ExitCode } from '../../exit-codes.js';
import type { ThrowawayRequest, ThrowawayServer } from '../../model/kind.js';
import { startMariadb } from '../../throwaway/mariadb.js';

/** "MariaDB 10.11" from "10.11.6-MariaDB-0+deb12u1"; "MySQL 8.0" from "8.0.36". */
export function mysqlMajor(version: string): string {
  const m = /^(\d+)\.(\d+)/.exec(version.trim());
  return `${/mariadb/i.test(version) ? 'MariaDB' : 'MySQL'} ${m ? `${m[1]}.${m[2]}` : version}`;
}

/** Dumps of one flavour and major version share a throwaway server. */
export function throwawayKey(serverVersion: string): string {
  return mysqlMajor(serverVersion).replace(' ', '-');
}

/**
 * verify's MariaDB: customers' dumps run here, so it runs as an OS user of its own (root only
 * when we are not root, as in development), in a private directory, file access confined to it,
 * events off; loads are made fast rather than durable. Only this machine's server binary exists:
 * a dump from another flavour or major version cannot be loaded the same way, and says so.
 * Confined by its settings (startMariadb's runAs), not by request.isolate's namespaces.
 */
export async function startThrowaway(request: ThrowawayRequest): Promise<ThrowawayServer> {
  const server = await startMariadb({
    baseDir: request.baseDir,
    ...(process.getuid?.() === 0 ? { runAs: request.osUser } : {}),
    serverArgs: ['--innodb-buffer-pool-size=256M', '--innodb-flush-log-at-trx-commit=0', '--innodb-doublewrite=0', '--event-scheduler=OFF'],
  });
  const want = mysqlMajor(request.serverVersion);
  const have = mysqlMajor(server.version);
  if (want !== have) {
    await server.destroy();
    throw new BackupError(`the dump comes from ${want} but this machine's server is ${have}: cannot load it the same way`, ExitCode.MISSING_DEPENDENCY);
  }
  // Reached through its socket as root with an empty password file, so nothing of the live
  // server's configuration (defaults_file's host, password) applies.
  const empty = join(request.baseDir, `empty-password-${throwawayKey(request.serverVersion)}`);
  writeFileSync(empty, '', { mode: 0o600 });
  return {
    baseDir: server.baseDir,
    target: { socket: server.socket, user: 'root', password_file: empty },
    sql: (statement, database) => server.sql(statement, database),
    destroy: () => server.destroy(),
  };
}
