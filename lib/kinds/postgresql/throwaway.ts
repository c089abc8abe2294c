import { join } from 'node:path';
import type { ThrowawayRequest, ThrowawayServer } from '../../model/kind.js';
import { ensureServiceUser } from '../../throwaway/mariadb.js';
import { startPostgres } from '../../throwaway/postgres.js';

/** "15" from "15.14 (Debian 15.14-0+deb12u1)"; "9.6" from "9.6.24" (two-part majors before 10). */
export function postgresMajor(version: string): string {
  const m = /^(\d+)(?:\.(\d+))?/.exec(version.trim());
  if (!m) return version;
  return Number(m[1]) >= 10 ? m[1]! : `${m[1]}.${m[2] ?? '0'}`;
}

/** One throwaway cluster per major version: each loads with its own pg_restore. */
export function throwawayKey(serverVersion: string): string {
  return postgresMajor(serverVersion);
}

/**
 * verify's PostgreSQL of the dump server's major version (its own initdb and pg_restore). It
 * runs as an OS user of its own, not `postgres` (who owns the live cluster's files): what a dump
 * gets to run as the superuser there (COPY … TO PROGRAM) runs as nobody of importance, inside
 * request.isolate's namespaces (no network, the live servers' directories covered).
 */
export async function startThrowaway(request: ThrowawayRequest): Promise<ThrowawayServer> {
  await ensureServiceUser(request.osUser);
  const major = postgresMajor(request.serverVersion);
  return startPostgres({ baseDir: join(request.baseDir, `pg${major}`), major, osUser: request.osUser, wrapStart: request.isolate });
}
