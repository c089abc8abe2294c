/**
 * The performance work (issue 10) against real components: the parallel loader on a real
 * MariaDB, streaming verification through real pipes, the server pacer against real busy
 * statements, the process priority as the kernel reports it, the MyISAM lock time in a real
 * run's manifest, and `npm run bench:dumps -- --quick` (that it runs to its RESULT line; the
 * figures are for the full run).
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadedConfig } from '../lib/config/load.js';
import { resolvePaths } from '../lib/config/paths.js';
import { configSchema } from '../lib/config/schema.js';
import { mysqlKind, type MysqlSession } from '../lib/kinds/mysql/index.js';
import { binarySafeTables, headerNames } from '../lib/kinds/mysql/load/charsets.js';
import { indexSqlDump, SqlDumpIndexer } from '../lib/kinds/mysql/load/dump-index.js';
import { decodeDumpMap, encodeDumpMap, MAP_SUFFIX, readDumpMap, withDumpMap } from '../lib/kinds/mysql/load/dump-map.js';
import { StreamTail } from '../lib/dumps/verify.js';
import { earlySql, loadSqlDumpParallel, mapSqlDump, partitionRows, type PhaseTable, type RowCharset } from '../lib/kinds/mysql/load/parallel.js';
import { resolveWireTarget, wireTargetOf, WireSink } from '../lib/kinds/mysql/load/wire.js';
import { whichSystem } from '../lib/run/which.js';
import { planAndDump } from '../lib/job/dump-step.js';
import { ServerPacer } from '../lib/dumps/throttle.js';
import { autoConcurrency, dumpTuning } from '../lib/dumps/tuning.js';
import { memoryLogger } from '../lib/log.js';
import { cmd } from '../lib/run/command.js';
import { pipeToFile } from '../lib/run/pipeline.js';
import { RateLimit } from '../lib/run/rate-limit.js';
import { withPriority } from '../lib/run/priority.js';
import { run } from '../lib/run/run.js';
import { mysqlChecksums } from '../lib/sandbox/db-checks.js';
import { RestoreError } from '../lib/errors.js';
import { startMariadb, type MariadbServer } from '../lib/sandbox/mariadb.js';

let server: MariadbServer;
let work: string;

function loaded(extra: Record<string, unknown> = {}, mysql: Record<string, unknown> = {}): LoadedConfig {
  const config = configSchema.parse({
    paths: { root: work },
    panel: { enabled: false },
    databases: { postgresql: { enabled: false }, mysql: { enabled: true, socket: server.socket, defaults_file: join(work, 'absent.cnf'), ...mysql } },
    ...extra,
  });
  return { config, file: undefined, paths: resolvePaths(config) };
}

async function session(): Promise<MysqlSession> {
  return (await mysqlKind.open({ loaded: loaded(), log: memoryLogger() })) as MysqlSession;
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
  work = await mkdtemp(join(tmpdir(), 'asb-perf-'));
  server = await startMariadb();
  // Several INSERT statements per table (more than one net buffer), values with newlines,
  // quotes, ';' and ');' inside, binary, a MyISAM table, a trigger whose body INSERTs, a
  // procedure in a DELIMITER block, a view.
  await server.sql(`
    CREATE DATABASE src; USE src;
    CREATE TABLE posts (id INT PRIMARY KEY, body LONGTEXT, bin BLOB) ENGINE=InnoDB;
    INSERT INTO posts SELECT seq, CONCAT('line1\\nline2 it''s ");\\n" x);', REPEAT('abc', seq % 300)), RANDOM_BYTES(64) FROM seq_1_to_12000;
    CREATE TABLE stats (id INT PRIMARY KEY, hits INT) ENGINE=MyISAM;
    INSERT INTO stats SELECT seq, seq * 3 FROM seq_1_to_3000;
    CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, post INT) ENGINE=InnoDB;
    CREATE TRIGGER posts_ai AFTER INSERT ON posts FOR EACH ROW INSERT INTO audit (post) VALUES (NEW.id);
    DELIMITER //
    CREATE PROCEDURE top_posts(n INT) BEGIN SELECT id FROM posts ORDER BY id LIMIT n; END//
    DELIMITER ;
    CREATE VIEW v_posts AS SELECT id FROM posts;
  `);
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

describe('streaming verification (pipeToFile tap)', () => {
  it('sees every byte of the tapped stage and still writes the compressed file', async () => {
    const src = join(work, 'tap-src.txt');
    const text = Array.from({ length: 200000 }, (_, i) => `row ${i}\n`).join('') + '-- Dump completed on today\n';
    await writeFile(src, text);
    const chunks: Buffer[] = [];
    const memories = new Set<ArrayBufferLike>();
    const tail = new StreamTail(100);
    const out = join(work, 'tap.zst');
    // Copied: a chunk is valid only during the call, the relay reads into one buffer again.
    const onData = (c: Buffer) => {
      chunks.push(Buffer.from(c));
      memories.add(c.buffer);
      tail.update(c);
    };
    await pipeToFile([cmd('cat', [src]), cmd('zstd', ['-q', '-c'])], out, { tap: { after: 0, onData }, fsync: false });
    expect(Buffer.concat(chunks).toString() === text).toBe(true);
    expect(chunks.length).toBeGreaterThan(4); // 2.3 MB: many reads
    expect(memories.size).toBe(1); // all into the same memory: no Buffer per read
    expect(tail.text()).toBe(text.slice(-100));
    expect((await run(cmd('zstd', ['-q', '-dc', out]))).stdout).toBe(text);
  });

  it('StreamTail keeps the last bytes of chunks of any size, each valid only during its call', () => {
    const stream = Buffer.from(Array.from({ length: 5000 }, (_, i) => `${i},`).join(''));
    const tail = new StreamTail(64);
    const scratch = Buffer.alloc(300);
    let at = 0;
    for (let i = 0; at < stream.length; i++) {
      const n = Math.min(stream.length - at, [1, 7, 63, 64, 65, 300, 2][i % 7]!);
      stream.copy(scratch, 0, at, at + n);
      tail.update(scratch.subarray(0, n));
      scratch.fill(0x2a); // the caller reuses its buffer: nothing may point into it
      at += n;
      if (i === 0) expect(tail.text()).toBe('0');
    }
    expect(tail.text()).toBe(stream.subarray(-64).toString());
  });

  it('a tap that throws fails the pipeline (the compressor saw a short input and exited 0)', async () => {
    const src = join(work, 'tap-src.txt');
    const err = await pipeToFile([cmd('cat', [src]), cmd('zstd', ['-q', '-c'])], join(work, 'tap2.zst'), {
      tap: { after: 0, onData: () => { throw new Error('check exploded'); } },
    }).catch((e: unknown) => e);
    // The cause, not the SIGPIPE it left the tapped stage with (2.3 MB: cat is still writing).
    expect(String(err)).toMatch(/relaying its output failed: check exploded/);
  });

  it('dumpPlan records how long a MyISAM database held its table locks, and only for it', async () => {
    const result = await planAndDump({ loaded: loaded({}, { include: ['src', 'copy1'], dump_users: false }), log: memoryLogger(), kinds: [mysqlKind], siteOf: () => undefined });
    expect(result.ok).toBe(true);
    const src = result.manifest.entries.find((e) => e.database === 'src')!;
    expect(src.lockMode).toBe('lock-tables');
    expect(src.lockHeldMs).toBeGreaterThan(0);
    expect(src.lockHeldMs).toBeLessThanOrEqual(src.durationMs);
    // copy1 has the MyISAM table too; a database of InnoDB only holds none.
    await server.sql('CREATE DATABASE inno; CREATE TABLE inno.t (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO inno.t VALUES (1)');
    const second = await planAndDump({ loaded: loaded({}, { include: ['inno'], dump_users: false }), log: memoryLogger(), kinds: [mysqlKind], siteOf: () => undefined });
    const inno = second.manifest.entries.find((e) => e.database === 'inno')!;
    expect(inno.lockMode).toBe('single-transaction');
    expect(inno.lockHeldMs).toBeUndefined();
    // Verified while streaming: the file on disk is complete.
    const file = join(second.dir, inno.path!);
    expect((await run(cmd('zstd', ['-q', '-dc', file]))).stdout).toMatch(/-- Dump completed/);
  }, 120_000);

  it('a database whose last dump was small goes through files started by the spawner: the same verified dump, the lock time, failures still fail', async () => {
    await server.sql('CREATE DATABASE small_ok; CREATE TABLE small_ok.t (id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB; INSERT INTO small_ok.t VALUES (1, REPEAT("x", 300)), (2, "y")');
    await server.sql('CREATE DATABASE small_bad; CREATE TABLE small_bad.t (a INT) ENGINE=InnoDB');
    await server.sql('CREATE DATABASE small_my; USE small_my; CREATE TABLE small_my.hits (id INT PRIMARY KEY, n INT) ENGINE=MyISAM; INSERT INTO small_my.hits SELECT seq, seq FROM seq_1_to_500');
    const dumpsOf = async (): Promise<{ result: Awaited<ReturnType<typeof planAndDump>>; via: Map<string, unknown> }> => {
      const log = memoryLogger();
      const result = await planAndDump({ loaded: loaded({}, { include: ['small_*'], dump_users: false }), log, kinds: [mysqlKind], siteOf: () => undefined });
      return { result, via: new Map(log.entries.filter((e) => e.msg.startsWith('dumped ')).map((e) => [e.fields.database as string, e.fields.via])) };
    };
    // No previous size: kernel pipes, as for any database the first time.
    const first = await dumpsOf();
    expect(first.result.ok).toBe(true);
    expect(first.via.get('small_ok')).toBe('pipes');
    const good = first.result.manifest.entries.find((e) => e.database === 'small_ok')!;

    await server.sql('USE small_bad; CREATE VIEW v AS SELECT a FROM t; DROP TABLE t');
    const second = await dumpsOf();
    expect(second.via.get('small_ok')).toBe('files');
    expect(second.via.get('small_my')).toBe('files');
    const ok = second.result.manifest.entries.find((e) => e.database === 'small_ok')!;
    expect(ok.status).toBe('ok');
    const bytes = readFileSync(join(second.result.dir, ok.path!));
    expect(ok.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(ok.bytes).toBe(bytes.length);
    const text = (await run(cmd('zstd', ['-q', '-dc', join(second.result.dir, ok.path!)]))).stdout;
    expect(text).toMatch(/INSERT INTO `t` VALUES\s*\(1,'x{300}'\),\s*\(2,'y'\);/);
    expect(text).toMatch(/-- Dump completed/);
    // The MyISAM database's lock time is its dump stage alone (the compression runs after it).
    const myisam = second.result.manifest.entries.find((e) => e.database === 'small_my')!;
    expect(myisam.lockMode).toBe('lock-tables');
    expect(myisam.lockHeldMs).toBeGreaterThan(0);
    expect(myisam.lockHeldMs).toBeLessThan(myisam.durationMs);
    // A dump that fails on this path fails the run, names the tool and leaves no file behind.
    expect(second.result.ok).toBe(false);
    const bad = second.result.manifest.entries.find((e) => e.database === 'small_bad')!;
    expect(bad.status).toBe('failed');
    expect(bad.error?.message).toMatch(/^mariadb-dump: exited with 2: .*small_bad/);
    expect(bad.path).toBeUndefined();
    expect(readdirSync(second.result.dir, { recursive: true }).map(String).filter((f) => f.includes('small_bad') || f.includes('.stage'))).toEqual([]);
    // The first run's good dump of it is still there and still what the manifest says.
    expect(createHash('sha256').update(readFileSync(join(first.result.dir, good.path!))).digest('hex')).toBe(good.sha256);
    await server.sql('DROP DATABASE small_ok; DROP DATABASE small_bad; DROP DATABASE small_my');
  }, 120_000);
});

describe('pacing and priority', () => {
  it('waits while the server runs more statements than threads_running, then dumps', async () => {
    const s = await session();
    try {
      const log = memoryLogger();
      const pacer = new ServerPacer({ threads_running: 2, max_wait: '1m' }, log, 2, 200);
      const sleepers = Array.from({ length: 4 }, () => server.sql('SELECT SLEEP(2)'));
      await new Promise((r) => setTimeout(r, 300));
      const t0 = Date.now();
      await pacer.run(s, 'mysql x', async () => undefined);
      const waited = Date.now() - t0;
      await Promise.all(sleepers);
      expect(waited).toBeGreaterThan(1000);
      expect(log.entries.some((e) => /paused .* server was busy \(\d+ statements running, threshold 2\)/.test(e.msg))).toBe(true);
      // An idle server: no wait at all.
      const t1 = Date.now();
      await pacer.run(s, 'mysql y', async () => undefined);
      expect(Date.now() - t1).toBeLessThan(1000);
    } finally {
      await s.close();
    }
  }, 60_000);

  it('dumps.max_rate holds every dump together to that much SQL per second, through pipes and through files', async () => {
    const limit = new RateLimit(4 << 20);
    const t0 = performance.now();
    // Two streams at once, 1 MiB each in 64 KiB chunks: 2 MiB at 4 MiB/s together, not each.
    await Promise.all([0, 1].map(async () => { for (let i = 0; i < 16; i++) await limit.take(64 << 10); }));
    const took = performance.now() - t0;
    expect(took).toBeGreaterThan(350); // 500 ms, less the 100 ms credited up front
    expect(took).toBeLessThan(3000);
    // A run stopped meanwhile (SIGTERM, its time limit) does not sit out the wait: 10 s owed, 0.2 s waited.
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 200);
    const t1 = performance.now();
    await new RateLimit(1 << 20).take(10 << 20, stop.signal);
    expect(performance.now() - t1).toBeLessThan(5000);

    const config = { include: ['src', 'small_paced'], dump_users: false };
    await server.sql('CREATE DATABASE IF NOT EXISTS small_paced; USE small_paced; CREATE TABLE IF NOT EXISTS small_paced.t (id INT PRIMARY KEY, v TEXT); INSERT IGNORE INTO small_paced.t SELECT seq, REPEAT(\'y\', 2000) FROM seq_1_to_1000');
    const free = await planAndDump({ loaded: loaded({}, config), log: memoryLogger(), kinds: [mysqlKind], siteOf: () => undefined });
    const paced = await planAndDump({ loaded: loaded({ dumps: { max_rate: '2M' } }, config), log: memoryLogger(), kinds: [mysqlKind], siteOf: () => undefined });
    expect(free.ok && paced.ok).toBe(true);
    const entry = (r: typeof free, db: string) => r.manifest.entries.find((e) => e.database === db)!;
    // src streams (its map says how much SQL went by); small_paced (2 MB of SQL, a few KB
    // compressed) went through files the second time: its slot waited out its share instead.
    const sql = (await mapSqlDump(join(paced.dir, entry(paced, 'src').path!), 'zstd')).bytes;
    expect(entry(paced, 'src').durationMs).toBeGreaterThan((0.8 * 1000 * sql) / (2 << 20));
    expect(entry(paced, 'src').durationMs).toBeGreaterThan(2 * entry(free, 'src').durationMs);
    expect(entry(paced, 'small_paced').durationMs).toBeGreaterThan(600); // ~2 MB at 2 MiB/s
    expect(() => configSchema.parse({ dumps: { max_rate: '512K' } })).toThrow(/at least 1M per second/);
    expect(() => configSchema.parse({ dumps: { max_rate: 'fast' } })).toThrow(/a rate like 10M/);
    expect(configSchema.parse({}).dumps.max_rate).toBe('0');
  }, 120_000);

  it('starts anyway after max_wait (a late backup beats none)', async () => {
    const s = await session();
    try {
      const log = memoryLogger();
      const pacer = new ServerPacer({ threads_running: 1, max_wait: '500ms' }, log, 2, 100);
      const sleepers = Array.from({ length: 3 }, () => server.sql('SELECT SLEEP(3)'));
      await new Promise((r) => setTimeout(r, 300));
      const t0 = Date.now();
      await pacer.run(s, 'mysql z', async () => undefined);
      expect(Date.now() - t0).toBeLessThan(2500);
      expect(log.entries.some((e) => /still busy .* dumping mysql z anyway/.test(e.msg))).toBe(true);
      await Promise.all(sleepers);
    } finally {
      await s.close();
    }
  }, 60_000);

  it('children run at the configured nice and ionice class, and ours is restored afterwards', async () => {
    const stat = async (): Promise<{ nice: number; io: string }> => {
      const r = await run(cmd('bash', ['-c', 'cut -d" " -f19 /proc/$$/stat; ionice -p $$']));
      const [nice, io] = r.stdout.split('\n');
      return { nice: Number(nice), io: io ?? '' };
    };
    const before = await stat();
    const inside = await withPriority({ nice: 15, ionice: 'idle' }, memoryLogger(), stat);
    expect(inside.nice).toBe(15);
    expect(inside.io).toBe('idle');
    expect(await stat()).toEqual(before);
  });

  it('concurrency auto follows idle cores; zstd threads go to a database dumped alone', () => {
    expect(autoConcurrency(2, 0)).toBe(2);
    expect(autoConcurrency(2, 1.7)).toBe(1);
    expect(autoConcurrency(32, 4)).toBe(8);
    const cfg = loaded({ dumps: { compression: 'zstd' } }).config;
    // One database alone gets every core; 2 at a time on 2 cores, one thread each (on 4 cores, 2).
    expect(dumpTuning(cfg, 1, 4, 0).compressor?.args).toContain('-T4');
    expect(dumpTuning(cfg, 30, 2, 0).compressor?.args).toEqual(['-q', '-c', '-1']);
    expect(dumpTuning(cfg, 30, 4, 0).compressor?.args).toContain('-T2');
    expect(dumpTuning(loaded({ engine: 'restic', dumps: { compression: 'zstd' } }).config, 30, 4, 0).compressor?.args).toContain('--rsyncable');
  });
});

describe('npm run bench:dumps -- --quick', () => {
  it('runs every section and ends with one RESULT line of numbers', async () => {
    const r = await execa(process.execPath, [join('dist', 'scripts', 'bench-dumps.js'), '--quick'], { reject: false, all: true, timeout: 170_000 });
    expect(r.exitCode, r.all).toBe(0);
    const lines = (r.stdout as string).trim().split('\n');
    const last = lines[lines.length - 1]!;
    expect(lines.filter((l) => l.startsWith('RESULT ')).length).toBe(1);
    const keys = ['vs_mydumper', 'big_vs_mydumper', 'vs_floor', 'vs_baseline', 'tiny_vs_loop', 'sidecar_vs_raw', 'restore_vs_myloader', 'p99_ratio', 'peak_rss_mb', 'dbs', 'mb'];
    expect(last).toMatch(new RegExp(`^RESULT ${keys.map((k) => `${k}=\\d+(\\.\\d+)?`).join(' ')}$`));
    expect(readFileSync('package.json', 'utf8')).toContain('"bench:dumps"');
  }, 180_000);
});
