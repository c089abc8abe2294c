/**
 * The parallel loader (lib/kinds/mysql/load) against a real MariaDB: the same tables, triggers,
 * routines and views as a plain client load, every byte of binary and non-UTF-8 rows, failures
 * named (never a silent partial load), what the map cannot prove through one client as it is,
 * no wait without end, and the map written at dump time. (Moved from test/performance.test.ts.)
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadedConfig } from '../../../../lib/config/load.js';
import { mysqlKind } from '../../../../lib/kinds/mysql/index.js';
import { binarySafeTables, headerNames } from '../../../../lib/kinds/mysql/load/charsets.js';
import { indexSqlDump, SqlDumpIndexer } from '../../../../lib/kinds/mysql/load/dump-index.js';
import { decodeDumpMap, encodeDumpMap, MAP_SUFFIX, readDumpMap, withDumpMap } from '../../../../lib/kinds/mysql/load/dump-map.js';
import { earlySql, loadSqlDumpParallel, mapSqlDump, partitionRows, type PhaseTable, type RowCharset } from '../../../../lib/kinds/mysql/load/parallel.js';
import { resolveWireTarget, wireTargetOf, WireSink } from '../../../../lib/kinds/mysql/load/wire.js';
import { whichSystem } from '../../../../lib/proc/which.js';
import { planAndDump } from '../../../../lib/job/dump-step.js';
import { memoryLogger } from '../../../../lib/log.js';
import { cmd } from '../../../../lib/proc/command.js';
import { pipeToFile } from '../../../../lib/proc/pipeline.js';
import { run } from '../../../../lib/proc/run.js';
import { mysqlChecksums } from '../../../../lib/demo/db-checks.js';
import { RestoreError } from '../../../../lib/errors.js';
import { startMariadb, type MariadbServer } from '../../../../lib/throwaway/mariadb.js';
import { mysqlOnlyConfig, SRC_DATABASE_SQL } from '../../../helpers/mysql-src.js';

let server: MariadbServer;
let work: string;

function loaded(extra: Record<string, unknown> = {}, mysql: Record<string, unknown> = {}): LoadedConfig {
  return mysqlOnlyConfig(work, server.socket, extra, mysql);
}

/** Rows as mariadb-dump writes them: the markers around them are what lets the loader spread them. */
const locked = (t: string, inserts: string): string => `LOCK TABLES \`${t}\` WRITE;\n${inserts}UNLOCK TABLES;\n`;

const client = (db: string) => cmd('mariadb', ['--no-defaults', `--socket=${server.socket}`, '--user=root', '--max-allowed-packet=1G', '--default-character-set=utf8mb4', db]);

const wire = (db: string, user = 'root') => (charset: RowCharset) => WireSink.open({ socketPath: server.socket, user }, db, `loading into ${db}`, 1 << 30, charset);

async function dumpTo(db: string, file: string): Promise<void> {
  const dumper = cmd('mariadb-dump', ['--no-defaults', `--socket=${server.socket}`, '--user=root', '--single-transaction', '--routines', '--events', '--triggers', '--hex-blob', '--', db]);
  await pipeToFile([dumper, cmd('zstd', ['-q', '-c', '-1'])], file);
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'asb-load-'));
  server = await startMariadb();
  await server.sql(SRC_DATABASE_SQL);
}, 120_000);

afterAll(async () => {
  await server?.destroy();
  await rm(work, { recursive: true, force: true });
});

describe('loadSqlDumpParallel', () => {
  it('loads a mariadb-dump file over 2 connections into the same tables, triggers, routines and views', async () => {
    const file = join(work, 'src.sql.zst');
    await dumpTo('src', file);
    await server.sql('CREATE DATABASE copy1');
    // Small batches, so both connections really load rows of the same table.
    const result = await loadSqlDumpParallel({ file, compression: 'zstd', client: client('copy1'), connections: 2, splitBytes: 256 << 10 });
    expect(result.inserts).toBeGreaterThan(3); // really spread: several statements
    expect(await mysqlChecksums(server, 'copy1')).toEqual(await mysqlChecksums(server, 'src'));
    const objects = (db: string) =>
      server.sql(`SELECT (SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA='${db}'), (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA='${db}'), (SELECT COUNT(*) FROM information_schema.VIEWS WHERE TABLE_SCHEMA='${db}')`);
    expect(await objects('copy1')).toBe(await objects('src'));
    expect((await objects('copy1')).trim()).toBe('1\t1\t1');
    // The trigger came after the rows: the audit table holds exactly the dumped rows, none twice.
    expect((await server.sql('SELECT COUNT(*) FROM copy1.audit')).trim()).toBe((await server.sql('SELECT COUNT(*) FROM src.audit')).trim());
  }, 120_000);

  it('fails, naming the statement error, when a statement fails (no silent partial load)', async () => {
    await server.sql('CREATE DATABASE copy2');
    // Two connections, the same key twice: whichever runs second fails, and so does the load.
    const plain = join(work, 'dup.sql');
    await writeFile(plain, 'CREATE TABLE t (id INT PRIMARY KEY);\n' + locked('t', 'INSERT INTO `t` VALUES\n(1),\n(2);\nINSERT INTO `t` VALUES\n(2);\n'));
    const err = await loadSqlDumpParallel({ file: plain, compression: 'none', client: client('copy2'), connections: 2, splitBytes: 1 }).catch((e: unknown) => e);
    expect(String(err)).toMatch(/Duplicate entry '2'/);
    // A truncated file (cut inside an INSERT) is an error too, not a smaller database.
    const cut = join(work, 'cut.sql');
    await writeFile(cut, 'CREATE TABLE u (id INT PRIMARY KEY);\nLOCK TABLES `u` WRITE;\nINSERT INTO `u` VALUES\n(1),\n(2');
    expect(String(await loadSqlDumpParallel({ file: cut, compression: 'none', client: client('copy2'), connections: 2 }).catch((e: unknown) => e))).toMatch(/truncated/);
    // DDL run ahead of the rows above it fails while those rows load: the load fails with it
    // (the next table's rows never start, and nothing is left unhandled).
    const badDdl = join(work, 'bad-ddl.sql');
    await writeFile(badDdl, 'CREATE TABLE v (id INT PRIMARY KEY);\n' + locked('v', 'INSERT INTO `v` VALUES\n(1),\n(2);\n') + 'CREATE TABLE w (id INT PRIMARY KEY,);\n' + locked('w', 'INSERT INTO `w` VALUES\n(1);\n') + '-- the end\n');
    expect(String(await loadSqlDumpParallel({ file: badDdl, compression: 'none', client: client('copy2'), connections: 2, splitBytes: 1 }).catch((e: unknown) => e))).toMatch(/ERROR 1064 .*syntax/);
  }, 60_000);
});

describe('a deadlock on a loading connection (mysql-wire.ts)', () => {
  it('under autocommit the statement InnoDB rolled back is sent again, once applied; outside autocommit it fails', async () => {
    await server.sql('CREATE DATABASE dl; USE dl; CREATE TABLE t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB; INSERT INTO t SELECT seq, 0 FROM seq_1_to_300');
    // Another session holds row 1 and many others (the heavier transaction: InnoDB picks ours as
    // the victim), then waits for row 2, which our statement holds while it waits for row 1.
    const other = WireSink.open({ socketPath: server.socket, user: 'root' }, 'dl', 'the other session', 1 << 20, 'utf8mb4');
    const blocker = await other;
    const q = (sink: WireSink, sql: string): Promise<void> => sink.send(Buffer.from(sql)).then(() => sink.drain());
    const deadlockAgainst = async (ours: WireSink): Promise<unknown> => {
      await q(blocker, 'BEGIN');
      await q(blocker, 'UPDATE t SET v = v + 100 WHERE id = 1 OR id > 100');
      const sent = ours.send(Buffer.from('UPDATE t SET v = v + 1 WHERE id IN (2, 1) ORDER BY id DESC')).then(() => ours.drain());
      await new Promise((r) => setTimeout(r, 500));
      const closing = q(blocker, 'UPDATE t SET v = v + 100 WHERE id = 2').then(() => q(blocker, 'COMMIT'));
      const result = await sent.then(() => 'ok', (e: unknown) => e);
      await closing;
      return result;
    };
    const ours = await WireSink.open({ socketPath: server.socket, user: 'root' }, 'dl', 'loading into dl', 1 << 20, 'utf8mb4');
    expect(await deadlockAgainst(ours)).toBe('ok');
    // Applied once: row 1 +100 (the other) +1 (ours), row 2 +100 +1.
    expect((await server.sql('SELECT id, v FROM dl.t WHERE id IN (1, 2) ORDER BY id')).trim()).toBe('1\t101\n2\t101');
    const noAutocommit = await WireSink.open({ socketPath: server.socket, user: 'root' }, 'dl', 'loading into dl', 1 << 20, 'utf8mb4');
    await noAutocommit.send(Buffer.from('SET autocommit = 0'));
    expect(String(await deadlockAgainst(noAutocommit))).toMatch(/ERROR 1213/);
    await Promise.all([ours.close(), noAutocommit.close().catch(() => undefined), blocker.close()]);
    await server.sql('DROP DATABASE dl');
  }, 60_000);
});

describe('what the map cannot prove goes through one client as it is', () => {
  it('an sql_mode the lexer does not follow: the whole file through one client, the same rows as a hand load', async () => {
    const file = join(work, 'unproven.sql');
    await writeFile(file, "CREATE TABLE t (id INT PRIMARY KEY, v TEXT);\nSET sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES');\n" + locked('t', "INSERT INTO `t` VALUES (1,'a\\'),(2,'DELIMITER ;\nUNLOCK TABLES;');\n"));
    await server.sql('CREATE DATABASE unproven_hand; CREATE DATABASE unproven_par');
    await run(cmd('mariadb', ['--no-defaults', `--socket=${server.socket}`, '--user=root', '--comments', '--database=unproven_hand']), { input: readFileSync(file, 'utf8') });
    const result = await loadSqlDumpParallel({ file, compression: 'none', client: client('unproven_par'), connections: 2, openRows: wire('unproven_par') });
    expect(result.serial).toMatch(/sql_mode/);
    const rows = (db: string) => server.sql(`SELECT id, HEX(v) FROM ${db}.t ORDER BY id`);
    expect(await rows('unproven_par')).toBe(await rows('unproven_hand'));
    expect((await rows('unproven_par')).trim().split('\n').length).toBe(2);
  }, 60_000);
});

describe('a restore never waits forever (load/watch.ts)', () => {
  const ours = async (db: string): Promise<number> => Number((await server.sql(`SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '${db}'`)).trim());

  it('a statement that never ends (a file cut inside a string): exit 8 naming it, our connections gone', async () => {
    await server.sql('CREATE DATABASE stall1');
    const file = join(work, 'never-ends.sql');
    await writeFile(file, 'CREATE TABLE t (id INT PRIMARY KEY);\n' + locked('t', 'INSERT INTO `t` VALUES\n(1),\n(2);\n') + "CREATE PROCEDURE p() SELECT 'never ends;\n");
    const started = Date.now();
    const err = await loadSqlDumpParallel({ file, compression: 'none', client: client('stall1'), connections: 2, openRows: wire('stall1'), stallMs: 1500 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RestoreError);
    expect((err as RestoreError).exitCode).toBe(8);
    expect(String(err)).toMatch(/no progress for \d+ s, stopped: the client that runs the schema is idle on the server while it reads on .*after: .*CREATE PROCEDURE p\(\) SELECT 'never ends;/);
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(await ours('stall1')).toBe(0);
  }, 60_000);

  it('a connection waiting for a lock that is never released: exit 8 naming the statement it waits in', async () => {
    await server.sql('CREATE DATABASE stall2; CREATE TABLE stall2.t (id INT PRIMARY KEY)');
    const { createConnection } = await import('mariadb');
    const holder = await createConnection({ socketPath: server.socket, user: 'root', database: 'stall2' });
    try {
      await holder.query('LOCK TABLES t WRITE');
      const file = join(work, 'locked-out.sql');
      await writeFile(file, 'DROP TABLE IF EXISTS `t`;\nCREATE TABLE `t` (id INT PRIMARY KEY);\n' + locked('t', 'INSERT INTO `t` VALUES\n(1);\n'));
      const err = await loadSqlDumpParallel({ file, compression: 'none', client: client('stall2'), connections: 2, stallMs: 1500 }).catch((e: unknown) => e);
      expect(String(err)).toMatch(/waits \(Waiting for table metadata lock\) in: DROP TABLE IF EXISTS `t`/);
      expect((err as RestoreError).exitCode).toBe(8);
    } finally {
      await holder.end();
    }
    expect(await ours('stall2')).toBe(0);
  }, 60_000);

  it('a long statement is not a stall: the server is executing it', async () => {
    await server.sql('CREATE DATABASE stall3');
    const file = join(work, 'slow.sql');
    await writeFile(file, 'CREATE TABLE t (id INT PRIMARY KEY);\nDO SLEEP(4);\n' + locked('t', 'INSERT INTO `t` VALUES\n(1);\n'));
    await loadSqlDumpParallel({ file, compression: 'none', client: client('stall3'), connections: 2, stallMs: 1000 });
    expect((await server.sql('SELECT COUNT(*) FROM stall3.t')).trim()).toBe('1');
  }, 60_000);
});

describe('the parallel load: phases and parts (load/parallel.ts)', () => {
  const ready = Promise.resolve();
  /** A table of `count` blocks of `size` bytes starting at `at`. */
  const table = (name: string, at: number, count: number, size: number): PhaseTable => ({
    seg: { kind: 'rows', table: name, blocks: Array.from({ length: count }, (_, i) => [at + i * size, at + (i + 1) * size] as const), bytes: count * size, statements: count },
    ready,
  });

  it('cuts a phase into one contiguous part of the file per connection: a small table whole, a big one split where the halves meet', () => {
    const MB = 1 << 20;
    // 1 MB (small), 10 MB, 30 MB: 41 MB, so the parts meet 20.5 MB in, inside the third table.
    const tables = [table('a', 0, 1, MB), table('b', MB, 10, MB), table('c', 11 * MB, 30, MB)];
    const parts = partitionRows(tables, 2, 4 * MB);
    const shape = parts.map((pieces) => pieces.map((p) => `${p.seg.table}:${p.blocks[0]![0] / MB}-${p.blocks.at(-1)![1] / MB}`));
    expect(shape).toEqual([['a:0-1', 'b:1-11', 'c:11-21'], ['c:21-41']]);
    // Every block exactly once, each part's blocks in file order (a connection's pass only moves forward).
    const blocks = parts.flatMap((pieces) => pieces.flatMap((p) => p.blocks));
    expect(blocks.map(([s]) => s)).toEqual(tables.flatMap((t) => t.seg.blocks.map(([s]) => s)));
    // A small table is never split, even across the middle; one connection takes everything.
    expect(partitionRows([table('s', 0, 3, MB)], 2, 4 * MB).map((p) => p.length)).toEqual([1, 0]);
    expect(partitionRows(tables, 1, 4 * MB)[0]!.map((p) => p.seg.table)).toEqual(['a', 'b', 'c']);
  });

  it("runs a table's DDL ahead of the rows above it, but not a trigger, a routine or the trailer, and keeps ENABLE KEYS for after the rows", () => {
    const ddl = Buffer.from('/*!40000 ALTER TABLE `a` ENABLE KEYS */;\n\n--\n-- Table structure for table `b`\n--\n\nDROP TABLE IF EXISTS `b`;\nCREATE TABLE `b` (\n  `id` int(11) NOT NULL\n) ENGINE=MyISAM;\n/*!40000 ALTER TABLE `b` DISABLE KEYS */;\n');
    const early = earlySql(ddl);
    expect(early?.later.map(String)).toEqual(['/*!40000 ALTER TABLE `a` ENABLE KEYS */;\n']);
    expect(String(early?.now)).not.toContain('ENABLE KEYS');
    expect(String(early?.now)).toContain('CREATE TABLE `b`');
    const trigger = Buffer.from('DELIMITER ;;\n/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER posts_ai AFTER INSERT ON posts FOR EACH ROW INSERT INTO audit (post) VALUES (NEW.id) */;;\nDELIMITER ;\n');
    expect(earlySql(trigger)).toBeUndefined();
    expect(earlySql(Buffer.from('/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;\n'))).toBeUndefined();
    // Words of a column definition are not statements; a statement that writes rows is.
    const onUpdate = 'CREATE TABLE `c` (\n  `id` int(11) NOT NULL,\n  `at` timestamp NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp(),\n  CONSTRAINT `f` FOREIGN KEY (`id`) REFERENCES `b` (`id`) ON DELETE CASCADE\n) ENGINE=InnoDB;\n';
    expect(String(earlySql(Buffer.from(onUpdate))?.now)).toBe(onUpdate);
    expect(earlySql(Buffer.from('UPDATE `c` SET `at` = NOW();\n'))).toBeUndefined();
    expect(earlySql(Buffer.from('/*!40000 REPLACE INTO `c` VALUES (1) */;\n'))).toBeUndefined();
  });

  it('loads two big tables of one phase at once, the MyISAM keys enabled after their rows', async () => {
    await server.sql(`
      CREATE DATABASE two; USE two;
      CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(200), KEY (v)) ENGINE=MyISAM;
      INSERT INTO a SELECT seq, REPEAT(CHAR(65 + seq % 26), 150) FROM seq_1_to_6000;
      CREATE TABLE b (id INT PRIMARY KEY, v VARCHAR(200), KEY (v)) ENGINE=InnoDB;
      INSERT INTO b SELECT seq, REPEAT(CHAR(97 + seq % 26), 150) FROM seq_1_to_6000;
      CREATE DATABASE two_copy;
    `);
    const file = join(work, 'two.sql.zst');
    await dumpTo('two', file);
    const index = await mapSqlDump(file, 'zstd');
    // One phase (no trigger between the tables): with 256 KiB splits the parts meet inside one table.
    const rows = index.segments.filter((s) => s.kind === 'rows');
    const parts = partitionRows(rows.map((seg) => ({ seg, ready })), 2, 256 << 10);
    expect(parts.map((p) => p.length).every((len) => len >= 1)).toBe(true);
    const result = await loadSqlDumpParallel({ file, compression: 'zstd', client: client('two_copy'), connections: 2, openRows: wire('two_copy'), splitBytes: 256 << 10 });
    expect(result.rowsVia).toBe('protocol');
    expect(await mysqlChecksums(server, 'two_copy')).toEqual(await mysqlChecksums(server, 'two'));
    // The MyISAM table comes first: its ENABLE KEYS sits in the DDL run ahead, kept for after its
    // rows; its keys stay 'disabled' if that never ran.
    expect(await server.sql("SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = 'two_copy' AND TABLE_NAME = 'a' AND COMMENT = 'disabled'")).toMatch(/^0\s*$/);
  }, 60_000);
});

describe('loadSqlDumpParallel over protocol connections (mysql-wire.ts)', () => {

  it('loads the rows over protocol connections, each its own key range, and the schema through the client', async () => {
    const file = join(work, 'src-wire.sql.zst');
    await dumpTo('src', file);
    await server.sql('CREATE DATABASE copy3');
    const result = await loadSqlDumpParallel({ file, compression: 'zstd', client: client('copy3'), connections: 2, openRows: wire('copy3'), splitBytes: 64 << 10 });
    expect(result.rowsVia).toBe('protocol');
    expect(result.protocolRefused).toBeUndefined();
    // posts, stats (the server's utf8mb4 default): as binary; audit has no rows.
    expect(result.binaryTables).toBe(2);
    expect(await mysqlChecksums(server, 'copy3')).toEqual(await mysqlChecksums(server, 'src'));
    expect((await server.sql("SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA='copy3'")).trim()).toBe('1');
    expect((await server.sql('SELECT COUNT(*) FROM copy3.audit')).trim()).toBe((await server.sql('SELECT COUNT(*) FROM src.audit')).trim());
  }, 120_000);

  it('keeps bytes that are not UTF-8 (a binary connection, or the client, sends them as they are) and fails on a bad statement', async () => {
    await server.sql('CREATE DATABASE copy4');
    const plain = join(work, 'raw.sql');
    const raw = (table: string, charset: string) => [
      Buffer.from(`CREATE TABLE \`${table}\` (\n  id INT PRIMARY KEY, v VARBINARY(16), t VARCHAR(20)\n) DEFAULT CHARSET=${charset};\nLOCK TABLES \`${table}\` WRITE;\nINSERT INTO \`${table}\` VALUES\n(1,_binary '`),
      Buffer.from([0xff, 0xfe, 0x80]),
      Buffer.from(`','caf\u00e9');\nINSERT INTO \`${table}\` VALUES\n(2,'ok','plain');\nUNLOCK TABLES;\n`),
    ];
    // b loads over a binary connection; l (latin1 text) over a UTF-8 one, which cannot carry
    // the raw bytes: that statement goes through the client.
    await writeFile(plain, Buffer.concat([Buffer.from('/*!40101 SET NAMES utf8mb4 */;\n'), ...raw('b', 'utf8mb4'), ...raw('l', 'latin1')]));
    const result = await loadSqlDumpParallel({ file: plain, compression: 'none', client: client('copy4'), connections: 2, openRows: wire('copy4') });
    expect(result.rowsVia).toBe('protocol');
    expect(result.binaryTables).toBe(1);
    const hex = (t: string, enc: BufferEncoding) => Buffer.from(t, enc).toString('hex').toUpperCase();
    expect((await server.sql('SELECT id, HEX(v), HEX(t) FROM copy4.b ORDER BY id')).trim()).toBe(`1\tFFFE80\t${hex('caf\u00e9', 'utf8')}\n2\t${hex('ok', 'utf8')}\t${hex('plain', 'utf8')}`);
    expect((await server.sql('SELECT id, HEX(v), HEX(t) FROM copy4.l ORDER BY id')).trim()).toBe(`1\tFFFE80\t${hex('caf\u00e9', 'latin1')}\n2\t${hex('ok', 'latin1')}\t${hex('plain', 'latin1')}`);
    // The same key twice over the protocol: the server's error, not a smaller table.
    await server.sql('CREATE DATABASE copy5');
    const dup = join(work, 'dup-wire.sql');
    await writeFile(dup, 'CREATE TABLE t (id INT PRIMARY KEY);\n' + locked('t', 'INSERT INTO `t` VALUES\n(1),\n(2);\nINSERT INTO `t` VALUES\n(2);\n'));
    expect(String(await loadSqlDumpParallel({ file: dup, compression: 'none', client: client('copy5'), connections: 2, openRows: wire('copy5') }).catch((e: unknown) => e))).toMatch(/ERROR 1062 \(23000\): Duplicate entry '2'/);
  }, 60_000);

  it('loads UTF-8 tables as binary and a latin1 one as text: every byte as in the source', async () => {
    const text = 'caf\u00e9 \u00fcber \u00bd';
    await server.sql(`
      CREATE DATABASE cs_src; USE cs_src;
      CREATE TABLE u4 (id INT PRIMARY KEY, t TEXT, k VARCHAR(10) COLLATE utf8mb4_bin) DEFAULT CHARSET=utf8mb4;
      INSERT INTO u4 SELECT seq, CONCAT('${text} \u{1F600} ', seq), 'k' FROM seq_1_to_3000;
      CREATE TABLE u3 (id INT PRIMARY KEY, t VARCHAR(100)) DEFAULT CHARSET=utf8mb3;
      INSERT INTO u3 SELECT seq, CONCAT('${text} ', seq) FROM seq_1_to_3000;
      CREATE TABLE l1 (id INT PRIMARY KEY, t VARCHAR(100)) DEFAULT CHARSET=latin1;
      INSERT INTO l1 SELECT seq, CONCAT('${text} ', seq) FROM seq_1_to_3000;
      CREATE TABLE mixed (id INT PRIMARY KEY, a VARCHAR(100), b VARCHAR(100) CHARACTER SET latin1) DEFAULT CHARSET=utf8mb4;
      INSERT INTO mixed SELECT seq, CONCAT('${text} ', seq), CONCAT('${text} ', seq) FROM seq_1_to_3000;
    `);
    const file = join(work, 'cs.sql.zst');
    await dumpTo('cs_src', file);
    await server.sql('CREATE DATABASE cs_copy');
    const result = await loadSqlDumpParallel({ file, compression: 'zstd', client: client('cs_copy'), connections: 2, openRows: wire('cs_copy'), splitBytes: 16 << 10 });
    expect(result.rowsVia).toBe('protocol');
    expect(result.binaryTables).toBe(2); // u4, u3; l1 and mixed hold latin1 columns
    const bytes = (db: string) => server.sql(`SELECT (SELECT MD5(GROUP_CONCAT(HEX(t), HEX(k) ORDER BY id)) FROM ${db}.u4), (SELECT MD5(GROUP_CONCAT(HEX(t) ORDER BY id)) FROM ${db}.u3), (SELECT MD5(GROUP_CONCAT(HEX(t) ORDER BY id)) FROM ${db}.l1), (SELECT MD5(GROUP_CONCAT(HEX(a), HEX(b) ORDER BY id)) FROM ${db}.mixed)`);
    expect(await bytes('cs_copy')).toBe(await bytes('cs_src'));
    // The latin1 text really is latin1 (0xE9), not UTF-8 stored as latin1 characters.
    expect((await server.sql('SELECT HEX(t) FROM cs_copy.l1 WHERE id = 1')).trim()).toBe(Buffer.from(`${text} 1`, 'latin1').toString('hex').toUpperCase());
    expect(await mysqlChecksums(server, 'cs_copy')).toEqual(await mysqlChecksums(server, 'cs_src'));
  }, 60_000);

  it('reads which tables may load as binary from the dump: UTF-8 or binary charsets under UTF-8 NAMES only', async () => {
    const index = async (sql: string) => indexSqlDump((async function* () { yield Buffer.from(sql); })());
    const table = (name: string, tail: string, cols = '  `id` int(11) NOT NULL,\n') => `CREATE TABLE \`${name}\` (\n${cols}  PRIMARY KEY (\`id\`)\n) ${tail};\nINSERT INTO \`${name}\` VALUES\n(1);\n`;
    const dump = [
      '/*!40101 SET NAMES utf8mb4 */;\n',
      table('a', 'ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci'),
      table('b', 'ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci'),
      table('c', 'ENGINE=InnoDB DEFAULT CHARSET=utf8mb4', '  `id` int(11) NOT NULL,\n  `v` varchar(5) CHARACTER SET latin1 COLLATE latin1_bin DEFAULT NULL,\n'),
      table('d', 'ENGINE=InnoDB DEFAULT CHARSET=utf8mb3 COLLATE=utf8mb3_general_ci', '  `id` int(11) NOT NULL,\n  `v` varbinary(5) DEFAULT NULL,\n'),
      table('e', 'ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci', '  `id` int(11) NOT NULL,\n  `v` varchar(5) COLLATE cp1250_bin DEFAULT NULL,\n'),
      table('we``ird', 'ENGINE=InnoDB'),
    ].join('');
    expect(headerNames((await index(dump)).header)).toBe('utf8mb4');
    expect([...binarySafeTables(await index(dump))].sort()).toEqual(['a', 'd']);
    // A dump written as latin1 text: no table's bytes are UTF-8.
    expect([...binarySafeTables(await index(dump.replace('SET NAMES utf8mb4', 'SET NAMES latin1')))]).toEqual([]);
  });

  it('falls back to client processes, saying why, when the protocol cannot connect', async () => {
    await server.sql('CREATE DATABASE copy6');
    const plain = join(work, 'small.sql');
    await writeFile(plain, 'CREATE TABLE t (id INT PRIMARY KEY);\n' + locked('t', 'INSERT INTO `t` VALUES\n(1),\n(2);\n'));
    const result = await loadSqlDumpParallel({ file: plain, compression: 'none', client: client('copy6'), connections: 2, openRows: wire('copy6', 'no_such_user') });
    expect(result.rowsVia).toBe('client');
    expect(result.protocolRefused).toMatch(/cannot connect to .* as no_such_user: ERROR 1045/);
    expect((await server.sql('SELECT GROUP_CONCAT(id ORDER BY id) FROM copy6.t')).trim()).toBe('1,2');
  }, 60_000);

  it("reads the client's credentials with my_print_defaults, and declines what it cannot carry over", async () => {
    const printDefaults = whichSystem('my_print_defaults');
    expect(printDefaults).toBeDefined();
    const included = join(work, 'root.my.cnf');
    await writeFile(included, '[client]\nuser=admin\npassword="se cr#et"\n', { mode: 0o600 });
    const option = join(work, 'client.cnf');
    await writeFile(option, `[client]\nuser=root\n!include ${included}\n[client]\nsocket=${server.socket}\n`, { mode: 0o600 });
    expect(await resolveWireTarget(printDefaults, option)).toEqual({ target: { socketPath: server.socket, user: 'admin', password: 'se cr#et' } });
    const tls = join(work, 'tls.cnf');
    await writeFile(tls, `[client]\nuser=root\nsocket=${server.socket}\nssl-ca=/etc/ca.pem\n`, { mode: 0o600 });
    expect(await resolveWireTarget(printDefaults, tls)).toEqual({ unsupported: 'the option files set ssl-ca' });
    expect(await resolveWireTarget(undefined, option)).toEqual({ unsupported: 'my_print_defaults is not installed' });
    expect(wireTargetOf(new Map([['user', 'root'], ['host', 'localhost']]))).toEqual({ unsupported: 'the option files name no socket' });
    expect(wireTargetOf(new Map([['user', 'root'], ['host', 'db.example'], ['port', '3307']]))).toEqual({ target: { host: 'db.example', port: 3307, user: 'root', password: undefined } });
  });
});

describe("the restore's map written at dump time (load/dump-map.ts)", () => {
  it('fed in chunks of any size, the indexer maps what one pass over the whole file maps; the map survives its file form', async () => {
    const file = join(work, 'map-src.sql.zst');
    await dumpTo('src', file);
    const whole = await mapSqlDump(file, 'zstd');
    await pipeToFile([cmd('zstd', ['-q', '-dc', file])], join(work, 'map-src.sql'));
    const text = readFileSync(join(work, 'map-src.sql'));
    for (const size of [61, 4096, (64 << 10) + 7]) {
      const indexer = new SqlDumpIndexer();
      const scratch = Buffer.alloc(size);
      // One reused buffer, overwritten after each feed: what the indexer keeps it has copied.
      for (let at = 0; at < text.length; at += size) {
        const n = text.copy(scratch, 0, at, Math.min(text.length, at + size));
        indexer.feed(scratch.subarray(0, n));
        scratch.fill(0x41);
      }
      expect(indexer.finish()).toEqual(whole);
    }
    expect(decodeDumpMap(encodeDumpMap(whole))).toEqual(whole);
    // Every block it names starts an INSERT into its table and ends a statement, in the file itself.
    const rows = whole.segments.filter((seg) => seg.kind === 'rows');
    expect(rows.map((r) => r.table).sort()).toEqual(['posts', 'stats']);
    for (const r of rows) for (const [start, end] of r.blocks) {
      expect(text.subarray(start, start + 14 + r.table.length).toString()).toBe(`INSERT INTO \`${r.table}\``);
      expect(text.subarray(end - 3, end).toString()).toBe(');\n');
    }
  });

  it('refuses a map that is not one, or whose blocks are out of order or past the dump', () => {
    const index = { header: [Buffer.from('/*!40101 SET NAMES utf8mb4 */;\n')], segments: [{ kind: 'rows' as const, table: 't', blocks: [[10, 20], [20, 40]] as [number, number][], bytes: 30, statements: 2 }], bytes: 50, inserts: 2, finalDelimiter: ';' };
    expect(decodeDumpMap(encodeDumpMap(index))).toEqual(index);
    const broken = (edit: (doc: Record<string, unknown> & { segments: { blocks?: number[] }[] }) => void): Buffer => {
      const doc = JSON.parse(encodeDumpMap(index).toString());
      edit(doc);
      return Buffer.from(JSON.stringify(doc));
    };
    expect(() => decodeDumpMap(broken((d) => (d.format = 'something else')))).toThrow();
    expect(() => decodeDumpMap(broken((d) => (d.segments[0]!.blocks = [20, 40, 10, 20])))).toThrow(/out of order/);
    expect(() => decodeDumpMap(broken((d) => (d.segments[0]!.blocks = [10, 20, 20, 60])))).toThrow(/past the dump/);
    expect(() => decodeDumpMap(broken((d) => (d.segments[0]!.blocks = [10, 20, 30])))).toThrow(/odd number/);
    expect(() => decodeDumpMap(Buffer.from('{"format": "apiscp-backup mysql dump map", "version": 1'))).toThrow();
    // A map written before the lexer (version 1) is refused: the restore reads the dump instead.
    expect(() => decodeDumpMap(broken((d) => (d.version = 1)))).toThrow(/older format \(version 1\)/);
  });

  it('a dump of 4 MiB or more gets its map beside it, named in the manifest; a restore reads it, and reads the dump instead when the map does not match its sha256', async () => {
    await server.sql('CREATE DATABASE IF NOT EXISTS tiny_one; CREATE TABLE IF NOT EXISTS tiny_one.t (id INT PRIMARY KEY); INSERT IGNORE INTO tiny_one.t VALUES (1)');
    const result = await planAndDump({ loaded: loaded({}, { include: ['src', 'tiny_one'], dump_users: false }), log: memoryLogger(), kinds: [mysqlKind], siteOf: () => undefined });
    expect(result.ok).toBe(true);
    const src = result.manifest.entries.find((e) => e.database === 'src')!;
    expect(src.map?.path).toBe(src.path + MAP_SUFFIX);
    const mapFile = join(result.dir, src.map!.path);
    expect(createHash('sha256').update(readFileSync(mapFile)).digest('hex')).toBe(src.map!.sha256);
    expect(readFileSync(mapFile).length).toBe(src.map!.bytes);
    // The map of exactly the bytes that went into the file.
    expect(await readDumpMap({ path: mapFile, sha256: src.map!.sha256 })).toEqual(await mapSqlDump(join(result.dir, src.path!), 'zstd'));
    // A small database's dump has none (its restore maps it in milliseconds).
    const tiny = result.manifest.entries.find((e) => e.database === 'tiny_one')!;
    expect(tiny.map).toBeUndefined();
    expect(readdirSync(join(result.dir, tiny.path!, '..')).filter((f) => f.startsWith('tiny_one'))).toEqual(['tiny_one.sql.zst']);

    const restoreInto = async (db: string): Promise<ReturnType<typeof memoryLogger>> => {
      const log = memoryLogger();
      const target = await mysqlKind.openTarget!({ loaded: loaded({ restore: { connections: 2 } }), log });
      try {
        // As restore db hands it over (restore/database.ts dumpFile): the manifest's name and details too.
        const dump = { path: join(result.dir, src.path!), compression: src.compression, format: 'sql' as const, map: { path: mapFile, sha256: src.map!.sha256 }, database: 'src', ...(src.details ? { details: src.details } : {}) };
        target.prefetch?.(dump);
        await target.createDatabase(db, dump);
        await target.load(db, dump);
      } finally {
        await target.close();
      }
      expect(await mysqlChecksums(server, db)).toEqual(await mysqlChecksums(server, 'src'));
      return log;
    };
    const used = await restoreInto('from_map');
    expect(used.entries.some((e) => e.msg === 'restore: the dump-time map of the dump')).toBe(true);
    expect(used.entries.filter((e) => e.level === 'warn')).toEqual([]);

    // One byte of the map changed: its sha256 no longer matches, the dump is read for a map instead.
    const bytes = readFileSync(mapFile);
    bytes[bytes.length - 5]! ^= 1;
    writeFileSync(mapFile, bytes);
    const around = await restoreInto('around_map');
    expect(around.entries.some((e) => e.msg === 'restore: the dump-time map of the dump')).toBe(false);
    expect(around.entries.filter((e) => e.level === 'warn').map((e) => e.msg)).toEqual([expect.stringMatching(/map beside .* cannot be used \(.*does not match the sha256 its manifest recorded\); reading the dump for it instead/)]);
  }, 120_000);

  it('a database whose last dump was small (compressed) gets no map, however much SQL it holds', async () => {
    // ~6 MiB of SQL that zstd makes a few KB of: a map the first night, none once its size is known.
    await server.sql("CREATE DATABASE squeezy; USE squeezy; CREATE TABLE t (id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB; INSERT INTO t SELECT seq, REPEAT('x', 6000) FROM seq_1_to_1000;");
    const dumpSqueezy = async () => {
      const result = await planAndDump({ loaded: loaded({}, { include: ['squeezy'], dump_users: false }), log: memoryLogger(), kinds: [mysqlKind], siteOf: () => undefined });
      expect(result.ok).toBe(true);
      return result.manifest.entries.find((e) => e.database === 'squeezy')!;
    };
    const first = await dumpSqueezy();
    expect(first.map).toBeDefined();
    expect(first.bytes).toBeLessThan(1 << 20);
    const second = await dumpSqueezy();
    expect(second.status).toBe('ok');
    expect(second.map).toBeUndefined();
  }, 120_000);

  it('withDumpMap passes the trailer check through and keeps no map below its size', () => {
    let seen = 0;
    const inner = { update: (c: Buffer) => void (seen += c.length), finish: () => undefined };
    const check = withDumpMap(inner, 100);
    const sql = Buffer.from('CREATE TABLE `t` (id INT);\nINSERT INTO `t` VALUES\n(1);\n');
    check.update(sql);
    check.finish('f', 'zstd');
    expect(seen).toBe(sql.length);
    expect(sql.length).toBeLessThan(100);
    expect(check.sidecar!()).toBeUndefined();
    const kept = withDumpMap(inner, sql.length);
    kept.update(sql);
    kept.finish('f', 'zstd');
    expect(decodeDumpMap(kept.sidecar!()!.data).segments.map((x) => x.kind)).toEqual(['sql', 'rows']);
    const failing = withDumpMap({ update: () => undefined, finish: () => { throw new Error('no trailer'); } }, 0);
    failing.update(Buffer.from('x\n'));
    expect(() => failing.finish('f', 'zstd')).toThrow('no trailer');
    expect(failing.sidecar!()).toBeUndefined(); // a dump that failed its check gets no map
  });
});
