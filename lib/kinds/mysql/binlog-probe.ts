import { mysqlIdent } from './sql.js';
import type { Logger } from '../../log.js';
import type { BinlogPosition } from '../../model/binlog.js';

type Query = (sql: string) => Promise<string[][]>;

/** Binary logging is on and this account may read the position (BINLOG MONITOR or SUPER). */
export async function binlogReadable(query: Query, log: Logger): Promise<boolean> {
  try {
    const on = (await query('SELECT @@GLOBAL.log_bin'))[0]?.[0] === '1';
    if (!on) return false;
    const row = (await query('SHOW MASTER STATUS'))[0];
    return !!row?.[0];
  } catch (err) {
    // Without the privilege the dumps go on as before, without a position: point-in-time needs it.
    log.warn(`mysql: binary logging is on but its position cannot be read, dumps record none: ${err instanceof Error ? err.message : String(err)}`);
    return false;
  }
}


/**
 * The server's position read while mariadb-dump holds `database`'s table locks: kept only if
 * some of its tables are still in use after the read (the dump may be over already).
 */
export async function lockedPosition(query: Query, database: string): Promise<BinlogPosition | undefined> {
  const rows = await query(`SHOW MASTER STATUS; SELECT 'asb-gtid', @@GLOBAL.gtid_binlog_pos; SHOW OPEN TABLES FROM ${mysqlIdent(database)} WHERE In_use > 0`);
  const [file, position] = rows[0] ?? [];
  const at = rows.findIndex((r) => r[0] === 'asb-gtid');
  if (!file || at !== 1 || !/^\d+$/.test(position ?? '')) return undefined;
  const inUse = rows.length - at - 1;
  if (inUse === 0) return undefined;
  const gtid = rows[at]?.[1];
  return { file, position: Number(position), ...(gtid ? { gtid } : {}), method: 'locked' };
}

/** The server's position now (SHOW MASTER STATUS and the GTID), undefined when it says none. */
export async function serverPosition(query: Query): Promise<Omit<BinlogPosition, 'method'> | undefined> {
  const rows = await query("SHOW MASTER STATUS; SELECT 'asb-gtid', @@GLOBAL.gtid_binlog_pos");
  const [file, position] = rows[0] ?? [];
  const gtid = rows.find((r) => r[0] === 'asb-gtid')?.[1];
  if (!file || !/^\d+$/.test(position ?? '')) return undefined;
  return { file, position: Number(position), ...(gtid ? { gtid } : {}) };
}
