import { existsSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadedConfig } from '../../../lib/config/load.js';
import { resolvePaths } from '../../../lib/config/paths.js';
import { configSchema } from '../../../lib/config/schema.js';
import { mysqlKind, type MysqlSession } from '../../../lib/kinds/mysql/index.js';
import type { DumpSpec } from '../../../lib/model/kind.js';
import { readTail } from '../../../lib/dumps/tail-check.js';
import { BackupError, CommandError } from '../../../lib/errors.js';
import { memoryLogger } from '../../../lib/log.js';
import { cmd, describe as describeCommand } from '../../../lib/proc/command.js';
import { pipeToFile } from '../../../lib/proc/pipeline.js';
import { run } from '../../../lib/proc/run.js';
import { startMariadb, type MariadbServer } from '../../../lib/throwaway/mariadb.js';

// Names a hosting customer (or an attacker) can create: quoting, shell syntax, option syntax,
// unicode, control characters. Each one gets tables, a view, a trigger, a procedure, an event.
const HOSTILE = ['my db', "it's", 'dq"x', 'back`tick', '$(touch /tmp/pwned)', 'dé_ü_日本', '-dash', '--help', 'tab\there', 'nl\nx'];
const PASSWORD = `p#a ss'w"o\\rd;$(x)`;
const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

const q = (name: string): string => '`' + name.replace(/`/g, '``') + '`';
const literal = (value: string): string => `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
const str = (value: string): string => `CONVERT(UNHEX('${Buffer.from(value, 'utf8').toString('hex')}') USING utf8mb4)`;

let server: MariadbServer;
let fresh: MariadbServer;
let work: string;
let counter = 0;

function loaded(mysql: Record<string, unknown>): LoadedConfig {
  const config = configSchema.parse({ databases: { mysql: { enabled: true, socket: server.socket, defaults_file: join(work, 'absent.cnf'), ...mysql } } });
  return { config, file: undefined, paths: resolvePaths(config) };
}

async function openSession(mysql: Record<string, unknown> = {}): Promise<MysqlSession> {
  const session = (await mysqlKind.open({ loaded: loaded(mysql), log: memoryLogger() })) as MysqlSession | undefined;
  if (!session) throw new Error('mysql kind unexpectedly disabled');
  return session;
}

async function dump(spec: DumpSpec, stages = [cmd('zstd', ['-q', '-c'])]): Promise<string> {
  const file = join(work, `dump-${++counter}.sql.zst`);
  await pipeToFile([spec.command, ...stages], file);
  return file;
}

async function restore(target: MariadbServer, file: string, database?: string): Promise<void> {
  const args = ['--no-defaults', `--socket=${target.socket}`, '--user=root', '--max-allowed-packet=1G', '--default-character-set=utf8mb4'];
  if (database !== undefined) args.push(`--database=${database}`);
  await pipeToFile([cmd('zstd', ['-q', '-d', '-c', '--', file]), cmd('mariadb', args)], join(work, `restore-${++counter}.out`));
}

async function objectCounts(target: MariadbServer, db: string): Promise<number[]> {
  const s = str(db);
  const out = await target.sql(
    `SELECT (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA=${s} AND TABLE_TYPE='BASE TABLE'),
      (SELECT COUNT(*) FROM information_schema.VIEWS WHERE TABLE_SCHEMA=${s}),
      (SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA=${s}),
      (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA=${s}),
      (SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA=${s})`,
  );
  return out.trim().split('\t').map(Number);
}

/** table name → CHECKSUM TABLE value, for every base table. */
async function checksums(target: MariadbServer, db: string): Promise<Record<string, string>> {
  const names = (await target.sql(`SELECT HEX(TABLE_NAME) FROM information_schema.TABLES WHERE TABLE_SCHEMA=${str(db)} AND TABLE_TYPE='BASE TABLE'`))
    .split('\n')
    .filter(Boolean)
    .map((h) => Buffer.from(h, 'hex').toString('utf8'));
  const result: Record<string, string> = {};
  for (const name of names) {
    const line = (await target.sql(`CHECKSUM TABLE ${q(db)}.${q(name)} EXTENDED`)).trim();
    result[name] = line.split('\t').pop()!;
  }
  return result;
}

async function seedObjects(db: string, engine = 'InnoDB'): Promise<void> {
  await server.sql(
    `CREATE DATABASE ${q(db)};
     USE ${q(db)};
     CREATE TABLE t (id INT PRIMARY KEY, s VARCHAR(100), b BLOB) ENGINE=${engine};
     CREATE TABLE log (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(200)) ENGINE=InnoDB;
     INSERT INTO t VALUES (1, ${str(db)}, X'${ALL_BYTES.toString('hex')}'), (2, 'ünïcødé ✓ 日本', NULL), (3, 'tab\\there\\nnewline \\\\ back', X'00');
     CREATE VIEW v AS SELECT id, s FROM t WHERE id > 1;
     CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW INSERT INTO log (note) VALUES (CONCAT('added ', NEW.id));
     CREATE PROCEDURE p() SELECT COUNT(*) FROM t;
     CREATE EVENT ev ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM log;
     INSERT INTO t VALUES (4, 'via trigger', NULL);`,
  );
}

beforeAll(async () => {
  await rm('/tmp/pwned', { force: true });
  work = await mkdtemp(join(tmpdir(), 'asb-mysql-test-'));
  // Two servers at once (the second is the fresh restore target); if one fails, stop the other.
  const started = await Promise.allSettled([startMariadb(), startMariadb()]);
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) {
    await Promise.all(started.map((r) => (r.status === 'fulfilled' ? r.value.destroy() : undefined)));
    throw failed.reason;
  }
  [server, fresh] = started.map((r) => (r as PromiseFulfilledResult<MariadbServer>).value) as [MariadbServer, MariadbServer];
  for (const db of HOSTILE) await seedObjects(db);
  // One MyISAM table beside InnoDB ones: the whole database must be dumped with --lock-tables.
  await seedObjects('mixed', 'MyISAM');
  await server.sql(
    `CREATE DATABASE big; USE big;
     CREATE TABLE blobs (id INT PRIMARY KEY, v LONGBLOB) ENGINE=InnoDB;
     INSERT INTO blobs SELECT seq, UNHEX(LPAD(HEX(seq), 2, '0')) FROM seq_0_to_255;
     INSERT INTO blobs VALUES (1000, X'${ALL_BYTES.toString('hex')}');
     INSERT INTO blobs VALUES (2000, REPEAT(X'${ALL_BYTES.toString('hex')}', 81920));`, // 20 MiB row
  );
}, 120_000);

afterAll(async () => {
  await Promise.all([server?.destroy(), fresh?.destroy()]);
  if (work) await rm(work, { recursive: true, force: true });
});

describe('mysql kind against a real MariaDB', { timeout: 120_000 }, () => {
  it('lists every user database with hostile names intact, without system schemas', async () => {
    const session = await openSession();
    try {
      const names = await session.listDatabases();
      expect(names).toEqual(expect.arrayContaining([...HOSTILE, 'mixed', 'big']));
      for (const sys of ['mysql', 'information_schema', 'performance_schema', 'sys']) expect(names).not.toContain(sys);
      expect(session.versions.server).toMatch(/MariaDB/);
      expect(session.versions.client).toMatch(/mariadb-dump|mysqldump/);
    } finally {
      await session.close();
    }
  });

  it('chooses --lock-tables for a database with a MyISAM table, --single-transaction for all-InnoDB', async () => {
    const session = await openSession();
    try {
      const mixed = await session.planDatabase('mixed');
      expect(mixed.lockMode).toBe('lock-tables');
      expect(mixed.command.args).toContain('--lock-tables');
      expect(mixed.details).toMatchObject({ engines: { MyISAM: 1, InnoDB: 1 }, tables: 2, views: 1, nonTransactionalTables: ['t'] });
      const inno = await session.planDatabase('my db');
      expect(inno.lockMode).toBe('single-transaction');
      expect(inno.command.args).toContain('--single-transaction');
      expect(inno.command.args).not.toContain('--databases');
      expect(inno.command.args.slice(-2)).toEqual(['--', 'my db']);
    } finally {
      await session.close();
    }
  });

  for (const [i, db] of [...HOSTILE, 'mixed', 'big'].entries()) {
    it(`dumps, verifies and restores ${JSON.stringify(db)} into a differently named database`, async () => {
      const session = await openSession();
      try {
        const spec = await session.planDatabase(db);
        const file = await dump(spec);
        // No shell ever saw the name (the file was removed before the seed): checked in each test.
        expect(existsSync('/tmp/pwned')).toBe(false);
        await spec.checkFile(file, 'zstd');
        const target = `restored ${i} '\`é`;
        await server.sql(`CREATE DATABASE ${q(target)}`);
        await restore(server, file, target);
        const counts = await objectCounts(server, db);
        const restored = await objectCounts(server, target);
        // mariadb-dump cannot dump the events of some names (quotes, backslashes, line breaks):
        // whenever an event did not come back, the spec must say so; none is lost silently.
        const eventsLost = counts[4]! - restored[4]!;
        expect(spec.details?.eventsSkipped).toBe(eventsLost > 0 ? eventsLost : undefined);
        if (eventsLost > 0) {
          expect(restored[4]).toBe(0);
          expect(spec.warnings).toEqual([expect.objectContaining({ code: 'events-skipped' })]);
        }
        // A plain name keeps its events: the skip is not taken for every database.
        if (/^[a-z ]+$/.test(db)) expect(eventsLost).toBe(0);
        expect(restored.slice(0, 4)).toEqual(counts.slice(0, 4));
        expect(await checksums(server, target)).toEqual(await checksums(server, db));
        if (db !== 'big') {
          expect(await objectCounts(server, db)).toEqual([2, 1, 1, 1, 1]);
          // The view and procedure must point at the restored copy, not the original database.
          expect((await server.sql('SELECT COUNT(*) FROM v', target)).trim()).toBe('3');
          expect((await server.sql('CALL p()', target)).trim()).toBe('4');
          expect((await server.sql(`SELECT HEX(b) FROM t WHERE id = 1`, target)).trim()).toBe(ALL_BYTES.toString('hex').toUpperCase());
        } else {
          expect((await server.sql('SELECT LENGTH(v) FROM blobs WHERE id = 2000', target)).trim()).toBe(String(20 * 1024 * 1024));
        }
      } finally {
        await session.close();
      }
    });
  }

  it('verifies gzip and uncompressed dumps too, and rejects a file cut short', async () => {
    const session = await openSession();
    try {
      const spec = await session.planDatabase('my db');
      const gz = await dump(spec, [cmd('gzip', ['-c'])]);
      await spec.checkFile(gz, 'gzip');
      const plain = join(work, 'plain.sql');
      await pipeToFile([spec.command], plain);
      await spec.checkFile(plain, 'none');
      const text = await readFile(plain);
      const cut = join(work, 'cut.sql');
      await writeFile(cut, text.subarray(0, text.length - 200));
      await expect(spec.checkFile(cut, 'none')).rejects.toThrow(/incomplete MySQL dump/);
      // A damaged compressed file fails in the decompressor: a CommandError, not a pass.
      const zst = await dump(spec);
      const packed = await readFile(zst);
      await writeFile(zst, packed.subarray(0, packed.length - 20));
      await expect(spec.checkFile(zst, 'zstd')).rejects.toBeInstanceOf(BackupError);
    } finally {
      await session.close();
    }
  });

  it('fails the dump of a database whose view points at a dropped table, and verify rejects the truncated output', async () => {
    await server.sql('CREATE DATABASE broken; USE broken; CREATE TABLE t (a INT); CREATE VIEW v AS SELECT a FROM t; DROP TABLE t;');
    const session = await openSession();
    try {
      const spec = await session.planDatabase('broken');
      const file = join(work, 'broken.sql.zst');
      const failure = await pipeToFile([spec.command, cmd('zstd', ['-q', '-c'])], file).catch((e: unknown) => e);
      expect(failure).toBeInstanceOf(CommandError);
      expect((failure as CommandError).exitCodeOfCommand).toBe(2);
      expect((failure as CommandError).message).toMatch(/mariadb-dump|mysqldump/);
      await expect(spec.checkFile(file, 'zstd')).rejects.toThrow(/Dump completed/);
      await expect(spec.checkFile(file, 'zstd')).rejects.toBeInstanceOf(BackupError);
    } finally {
      await session.close();
      await server.sql('DROP DATABASE broken');
    }
  });

  it('gives a clear error when the server is stopped before the dump', async () => {
    const session = await openSession();
    const spec = await session.planDatabase('my db');
    await server.stop();
    try {
      const failure = await dump(spec).catch((e: unknown) => e);
      expect(failure).toBeInstanceOf(CommandError);
      expect((failure as CommandError).message).toMatch(/Can't connect/);
      await expect(openSession()).rejects.toThrow(/cannot connect to the server/);
      // auto means installed, not reachable: an installed server that does not answer is a failed dump.
      expect(mysqlKind.expected({ loaded: loaded({ enabled: 'auto' }), log: memoryLogger() })).toMatch(/^(server binary|service unit) /);
      await expect(mysqlKind.open({ loaded: loaded({ enabled: 'auto' }), log: memoryLogger() })).rejects.toThrow(/cannot connect to the server/);
    } finally {
      await session.close();
      await server.start();
    }
  });

  it('fails with a CommandError when the server is killed during the dump of the big database', async () => {
    const session = await openSession();
    try {
      const spec = await session.planDatabase('big');
      // A reader that reads nothing until the server is dead keeps mariadb-dump blocked
      // mid-stream (40 MB of hex cannot fit in a pipe), so the dump still needs the server
      // afterwards (rest of the row, SHOW TRIGGERS): it cannot have finished. The gate is a FIFO
      // we write to after the kill. Under load the SELECT may not be seen in the process list
      // at all, so the wait for it is bounded.
      const gate = join(work, `gate-${Date.now()}`);
      await run(cmd('mkfifo', [gate]));
      const slow = cmd('sh', ['-c', 'read go < "$0"; exec cat', gate]);
      const running = dump(spec, [slow, cmd('zstd', ['-q', '-c'])]).catch((e: unknown) => e);
      const deadline = Date.now() + 1500;
      while (Date.now() < deadline) {
        const busy = await server.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT /*!40001 SQL_NO_CACHE */%'");
        if (busy.trim() !== '0') break;
        await new Promise((r) => setTimeout(r, 20));
      }
      await server.kill();
      await writeFile(gate, 'go\n');
      const failure = await running;
      expect(failure).toBeInstanceOf(CommandError);
      expect((failure as CommandError).command).toMatch(/mariadb-dump|mysqldump/);
      expect((failure as CommandError).exitCodeOfCommand).not.toBe(0);
    } finally {
      await session.close();
      await server.start();
    }
  });

  it('exports users and grants with --system=users and restores them on a fresh server', async () => {
    await server.sql(`CREATE USER 'restoreme'@'localhost' IDENTIFIED BY 'Restore-Me-1'; GRANT SELECT ON ${q('my db')}.* TO 'restoreme'@'localhost';`);
    const session = await openSession();
    try {
      const specs = await session.planServerWide();
      expect(specs).toHaveLength(1);
      const spec = specs[0]!;
      expect(spec.object).toBe('users');
      expect(spec.command.args).toContain('--system=users');
      const file = await dump(spec);
      await spec.checkFile(file, 'zstd');
      expect(await readTail(file, 'zstd', 1 << 20)).toContain('CREATE USER IF NOT EXISTS `restoreme`@`localhost`');
      await restore(fresh, file);
      expect(await fresh.sql("SHOW GRANTS FOR 'restoreme'@'localhost'")).toContain('GRANT SELECT ON `my db`.* TO `restoreme`@`localhost`');
      // The MySQL fallback (SHOW CREATE USER + SHOW GRANTS) also runs on MariaDB: check it too.
      await server.sql(`CREATE USER 'fallback'@'localhost' IDENTIFIED BY 'Fallback-1'; GRANT INSERT ON ${q("it's")}.* TO 'fallback'@'localhost';`);
      const viaShow = await session.planUsersWithShowGrants();
      const showFile = await dump(viaShow);
      await viaShow.checkFile(showFile, 'zstd');
      await restore(fresh, showFile);
      expect(await fresh.sql("SHOW GRANTS FOR 'fallback'@'localhost'")).toContain("GRANT INSERT ON `it's`.* TO `fallback`@`localhost`");
    } finally {
      await session.close();
    }
  });

  it('keeps the password out of every argv and error message (password_file, hostile password)', async () => {
    await server.sql(`CREATE USER 'backup'@'localhost' IDENTIFIED BY ${literal(PASSWORD)}; GRANT ALL ON *.* TO 'backup'@'localhost';`);
    const passwordFile = join(work, 'mysql.pw');
    await writeFile(passwordFile, PASSWORD + '\n', { mode: 0o600 });
    const seen: string[] = [];
    const session = await openSession({ user: 'backup', password_file: passwordFile });
    try {
      expect(statSync(session.optionFile).mode & 0o777).toBe(0o600);
      expect(await session.listDatabases()).toContain('my db');
      const specs = [await session.planDatabase('my db'), ...(await session.planServerWide())];
      for (const spec of specs) {
        seen.push(describeCommand(spec.command), JSON.stringify(spec.command));
        expect(spec.secrets).toEqual([PASSWORD]);
        const file = await dump(spec);
        await spec.checkFile(file, 'zstd');
      }
      await server.stop();
      try {
        const failure = await dump(specs[0]!).catch((e: unknown) => e);
        expect(failure).toBeInstanceOf(CommandError);
        seen.push(String(failure), JSON.stringify((failure as CommandError).context));
        const openFailure = await openSession({ user: 'backup', password_file: passwordFile }).catch((e: unknown) => e);
        expect(openFailure).toBeInstanceOf(BackupError);
        seen.push(String(openFailure), JSON.stringify((openFailure as BackupError).context));
      } finally {
        await server.start();
      }
      // A wrong password: access denied is an error even in auto mode, and says nothing secret.
      await writeFile(passwordFile, 'not-' + PASSWORD);
      const denied = await openSession({ user: 'backup', password_file: passwordFile, enabled: 'auto' }).catch((e: unknown) => e);
      expect(String(denied)).toMatch(/Access denied/);
      seen.push(String(denied), JSON.stringify((denied as BackupError).context));
      for (const text of seen) expect(text).not.toContain(PASSWORD);
    } finally {
      await session.close();
    }
    expect(existsSync(session.optionFile)).toBe(false);
  });

  it('reads credentials from defaults_file through !include when no password_file is set', async () => {
    const defaults = join(work, 'my.cnf');
    await writeFile(defaults, `[client]\nuser=backup\npassword="${PASSWORD.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"\n`, { mode: 0o600 });
    // The configured user does not exist: only the defaults file's user can succeed.
    const session = await openSession({ user: 'nobody-here', defaults_file: defaults });
    try {
      expect(await readFile(session.optionFile, 'utf8')).not.toContain(PASSWORD);
      expect((await session.planDatabase('my db')).lockMode).toBe('single-transaction');
    } finally {
      await session.close();
    }
  });

  it('is off only with enabled: false; under auto a server that does not answer is an error, like enabled: true', async () => {
    expect(mysqlKind.expected({ loaded: loaded({ enabled: false }), log: memoryLogger() })).toBeUndefined();
    expect(await mysqlKind.open({ loaded: loaded({ enabled: false }), log: memoryLogger() })).toBeUndefined();
    const absent = join(work, 'no.sock');
    await expect(mysqlKind.open({ loaded: loaded({ enabled: 'auto', socket: absent }), log: memoryLogger() })).rejects.toThrow(/Can't connect/);
    await expect(mysqlKind.open({ loaded: loaded({ enabled: true, socket: absent }), log: memoryLogger() })).rejects.toThrow(/Can't connect/);
  });
});
