import { startMariadb, type MariadbServer } from './mariadb.js';
import { startPostgres, type PostgresServer } from './postgres.js';

/** One throwaway MariaDB and one PostgreSQL server: the demo's and every test's pair. */
export interface Servers {
  readonly mariadb: MariadbServer;
  readonly postgres: PostgresServer;
  destroy(): Promise<void>;
}

/** Both started in parallel; when one fails the other is stopped again, then the failure is thrown. */
export async function startServers(): Promise<Servers> {
  const [my, pg] = await Promise.allSettled([retryOnce(() => startMariadb()), startPostgres()]);
  if (my.status === 'rejected' || pg.status === 'rejected') {
    await Promise.allSettled([my.status === 'fulfilled' && my.value.destroy(), pg.status === 'fulfilled' && pg.value.destroy()]);
    throw my.status === 'rejected' ? my.reason : (pg as PromiseRejectedResult).reason;
  }
  const mariadb = my.value;
  const postgres = pg.value;
  return {
    mariadb,
    postgres,
    destroy: async () => {
      await Promise.allSettled([mariadb.destroy(), postgres.destroy()]);
    },
  };
}

/**
 * mariadb-install-db sometimes aborts when several bootstrap at once on 2 cores ("Could not
 * remove temporary table '/tmp/#sql-temptable-…'", Unknown table 'mysql.tmp_user_sys'): once more.
 */
async function retryOnce<T>(start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (err) {
    if (!/mariadb-install-db failed/.test((err as Error).message)) throw err;
    return start();
  }
}
