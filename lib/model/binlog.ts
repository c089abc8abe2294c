/**
 * Where a MariaDB dump stands in the server's binary log: replaying that database's events from
 * here on the restored dump brings it forward in time (lib/binlog/, docs/point-in-time.md).
 */
export interface BinlogPosition {
  /** The binlog file name as the server names it (bin.000042). */
  readonly file: string;
  /** Byte offset in it: the first event after the dump's snapshot starts here. */
  readonly position: number;
  /** @@gtid_binlog_pos at that point, when the server said it. */
  readonly gtid?: string;
  /**
   * snapshot: the consistent-snapshot transaction's own position (mariadb-dump --master-data=2
   * with --single-transaction reads Binlog_snapshot_file/position, no global lock);
   * locked: SHOW MASTER STATUS read while mariadb-dump held the database's table locks;
   * quiet: the server's position was the same when the dump started and when it ended (nothing
   * was written anywhere meanwhile), for lock-tables dumps whose locks were gone before we could look.
   */
  readonly method: 'snapshot' | 'locked' | 'quiet';
}

/** The directory under dumps.dir where `binlog follow` keeps its copies. */
export const BINLOG_DIR = 'binlog';

export function isBinlogPosition(value: unknown): value is BinlogPosition {
  const v = value as Partial<BinlogPosition> | null;
  return !!v && typeof v.file === 'string' && typeof v.position === 'number' && (v.method === 'snapshot' || v.method === 'locked' || v.method === 'quiet');
}
