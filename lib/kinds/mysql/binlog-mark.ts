import type { BinlogPosition } from '../../model/binlog.js';
import type { StreamCheck } from '../../model/kind.js';

/**
 * The binlog position of a MariaDB dump, read from the dump as it streams by.
 *
 * single-transaction dumps run with --master-data=2: mariadb-dump then reads
 * Binlog_snapshot_file/position inside its own consistent-snapshot transaction (no FLUSH TABLES
 * WITH READ LOCK on MariaDB: checked with the general log) and writes them as a comment near the
 * top (`-- CHANGE MASTER TO MASTER_LOG_FILE='bin.000001', MASTER_LOG_POS=962;`) and the GTID as a
 * comment near the end (`-- SET GLOBAL gtid_slave_pos='0-1-4';`). Only the first bytes and the
 * last ones are looked at: mariadb-dump escapes line breaks inside row values, so a line that
 * starts with `-- ` in the header is its own; the header comes before any routine body.
 *
 * lock-tables dumps cannot use --master-data (it turns the dump into FLUSH TABLES WITH READ
 * LOCK: a global lock for the whole dump). mariadb-dump writes its first `Table structure`
 * comment after LOCK TABLES of the whole database: when the stream shows it, `readLocked` asks
 * the server's position from another session, and keeps it only if the tables are still locked
 * after the read (the dump may have finished before its bytes reached us).
 */
const HEAD_BYTES = 64 << 10;
const TAIL_BYTES = 16 << 10;
const FILE_POS = /^-- CHANGE MASTER TO MASTER_LOG_FILE='([^'\n]+)', MASTER_LOG_POS=(\d+);$/m;
const GTID = /^-- SET GLOBAL gtid_slave_pos='([0-9,-]*)';$/gm;
const FIRST_TABLE = /^-- Table structure for table /m;

export type LockedRead = (signal?: AbortSignal) => Promise<BinlogPosition | undefined>;
export type PositionRead = () => Promise<Omit<BinlogPosition, 'method'> | undefined>;

/** `check` plus the position: `snapshot` when the dump carries it, `readLocked` for lock-tables dumps. */
export function withBinlogMark(check: StreamCheck, how: { readonly snapshot: boolean; readonly readLocked?: LockedRead; readonly readNow?: PositionRead }): StreamCheck {
  // lock-tables: the position as the dump starts, for a dump over before its locks could be seen (quiet).
  const first = how.readLocked && how.readNow ? how.readNow().catch(() => undefined) : undefined;
  let lockedDone = false;
  let head = '';
  let headDone = false;
  let tail = Buffer.alloc(0);
  let locked: Promise<BinlogPosition | undefined> | undefined;
  return {
    update(chunk) {
      check.update(chunk);
      if (!headDone) {
        head += chunk.subarray(0, HEAD_BYTES - head.length).toString('latin1');
        if (how.readLocked && !locked && FIRST_TABLE.test(head)) locked = how.readLocked().catch(() => undefined).finally(() => (lockedDone = true));
        headDone = head.length >= HEAD_BYTES || (!how.readLocked && FILE_POS.test(head)) || locked !== undefined;
      }
      if (how.snapshot) tail = chunk.length >= TAIL_BYTES ? Buffer.from(chunk.subarray(chunk.length - TAIL_BYTES)) : Buffer.concat([tail.subarray(Math.max(0, tail.length + chunk.length - TAIL_BYTES)), chunk]);
    },
    finish: (file, compression) => check.finish(file, compression),
    // Until the locked read is back the relay reads no more: the dump blocks on its pipe with its locks held.
    hold: () => (locked && !lockedDone ? locked : undefined),
    sidecar: check.sidecar ? () => check.sidecar!() : undefined,
    async entryFacts() {
      const inner = await check.entryFacts?.();
      if (how.snapshot) {
        const binlog = snapshotMark(head, tail.toString('latin1'));
        return binlog ? { ...inner, binlog } : inner;
      }
      const binlog = await locked;
      if (binlog) return { ...inner, binlog };
      const [start, end] = [await first, await how.readNow?.().catch(() => undefined)];
      const quiet = start && end && start.file === end.file && start.position === end.position;
      return quiet ? { ...inner, binlog: { ...start, method: 'quiet' as const } } : inner;
    },
  };
}

/** The position mariadb-dump --master-data=2 wrote into the dump's head and tail, if it did. */
export function snapshotMark(head: string, tail: string): BinlogPosition | undefined {
  const m = FILE_POS.exec(head);
  if (!m) return undefined;
  const gtid = [...tail.matchAll(GTID)].at(-1)?.[1];
  return { file: m[1]!, position: Number(m[2]), ...(gtid ? { gtid } : {}), method: 'snapshot' };
}
