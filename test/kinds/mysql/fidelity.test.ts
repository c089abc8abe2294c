import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cmd } from '../../../lib/proc/command.js';
import { run } from '../../../lib/proc/run.js';
import type { Servers } from '../../../lib/throwaway/servers.js';
import { dumpMarkers, mysqlFidelityFingerprint } from '../../helpers/mysql-fidelity.js';
import { sandboxPool, type Sandbox } from '../../helpers/sandbox.js';

// A MariaDB database that holds what tenants put in theirs, dumped and put back with `restore db`
// through the built CLI at restore.connections 1, 2 and 4, and 2 with the protocol connections
// refused (client processes carry the rows): before the dump and after the restore the server
// must say the same of every object (test/helpers/mysql-fidelity.ts).

const DB = 'fid_corpus';
const BIG = 'fid_big';
const pool = sandboxPool();
let servers: Servers;
let sb: Sandbox;

/** Lines the loader once looked for, and a privilege escalation if it ever ran them. */
const MARKERS = [...dumpMarkers('texts'), '\\G'].join('\n');
const sq = (s: string): string => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;

/** SQL through the mariadb client WITH --comments: the server keeps the comments of bodies. */
async function sql(text: string, database?: string): Promise<void> {
  const args = ['--no-defaults', `--socket=${servers.mariadb.socket}`, '--user=root', '--comments', '--default-character-set=utf8mb4', '--max-allowed-packet=1G', '--batch'];
  if (database) args.push(`--database=${database}`);
  await run(cmd('mariadb', args), { input: text, timeoutMs: 300_000 });
}

const CORPUS = `
CREATE TABLE texts (
  id INT PRIMARY KEY, t TEXT, l VARCHAR(200) CHARACTER SET latin1, c CHAR(5), b BLOB, vb VARBINARY(64),
  j JSON, e ENUM('a','b','c'), s SET('x','y'), bits BIT(7), d DECIMAL(30,10), f FLOAT, db DOUBLE,
  dt DATETIME(6), ts TIMESTAMP(3) NULL, tm TIME(2), y YEAR, dte DATE,
  g INT AS (id * 2) VIRTUAL, gs VARCHAR(20) AS (CONCAT('g', id)) STORED, hidden INT INVISIBLE DEFAULT 7,
  CHECK (id >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
INSERT INTO texts (id, t, l, c, b, vb, j, e, s, bits, d, f, db, dt, ts, tm, y, dte, hidden) VALUES
  (1, ${sq(MARKERS)}, ${sq('caf\u00e9 ;\n);\n')}, 'ab''c', UNHEX('FF00FE27275C5C3B0A80'), UNHEX('C328FFFE'), '{"k": "DELIMITER ;\\\\n", "n": [1, 2.5, null]}', 'b', 'x,y', b'1010101', -12345678901234567890.0123456789, 1.5e-7, -2.2250738585072014e-308, '2026-01-02 03:04:05.678901', '2026-01-02 03:04:05.678', '-838:59:58.99', 2155, '1000-01-01', 42),
  (2, 'ends in a backslash \\\\', NULL, '', '', '', NULL, NULL, '', b'0', 0, 0, 0, NULL, NULL, NULL, NULL, NULL, 0),
  (3, CONCAT('line1', CHAR(10), 'UNLOCK TABLES;', CHAR(10), 'INSERT INTO \`texts\` VALUES (100,1);', CHAR(13), CHAR(0)), REPEAT('\u00fc', 200), 'zz', RANDOM_BYTES(1024), RANDOM_BYTES(64), '[]', 'c', 'y', b'1111111', 1, 3.4e38, 1.7976931348623157e308, '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999', '838:59:59', 1901, '9999-12-31', 1);
CREATE TABLE my (id INT PRIMARY KEY, v VARCHAR(100), KEY (v)) ENGINE=MyISAM DEFAULT CHARSET=utf8mb4;
INSERT INTO my SELECT seq, CONCAT('my ', seq, ' ;\\n', ${sq('DELIMITER ;;')}) FROM seq_1_to_500;
CREATE TABLE ar (id INT PRIMARY KEY, v TEXT) ENGINE=Aria DEFAULT CHARSET=utf8mb4;
INSERT INTO ar SELECT seq, ${sq(MARKERS)} FROM seq_1_to_50;
CREATE TABLE packet_edge (id INT PRIMARY KEY, b LONGBLOB) ENGINE=InnoDB;
INSERT INTO packet_edge VALUES (1, RANDOM_BYTES(1024)), (2, REPEAT(UNHEX('00FF275C'), 2 * 1024 * 1024 - 16)), (3, REPEAT('x', 8 * 1024 * 1024));
CREATE TABLE geo (id INT PRIMARY KEY, p POINT NOT NULL, SPATIAL KEY (p)) ENGINE=InnoDB;
INSERT INTO geo VALUES (1, ST_GeomFromText('POINT(1 2)')), (2, ST_GeomFromText('POINT(-3.5 1e10)'));
CREATE TABLE parts (id INT NOT NULL, v VARCHAR(20), PRIMARY KEY (id)) ENGINE=InnoDB PARTITION BY RANGE (id) (PARTITION p0 VALUES LESS THAN (100), PARTITION p1 VALUES LESS THAN MAXVALUE);
INSERT INTO parts SELECT seq, CONCAT('p', seq) FROM seq_1_to_300;
CREATE TABLE fa (id INT PRIMARY KEY, b INT, KEY (b)) ENGINE=InnoDB;
CREATE TABLE fb (id INT PRIMARY KEY, a INT, KEY (a), CONSTRAINT fb_a FOREIGN KEY (a) REFERENCES fa (id)) ENGINE=InnoDB;
ALTER TABLE fa ADD CONSTRAINT fa_b FOREIGN KEY (b) REFERENCES fb (id);
SET FOREIGN_KEY_CHECKS = 0;
INSERT INTO fa VALUES (1, 1), (2, 2);
INSERT INTO fb VALUES (1, 2), (2, 1);
SET FOREIGN_KEY_CHECKS = 1;
CREATE SEQUENCE seq_ids START WITH 100 INCREMENT BY 5;
DO NEXT VALUE FOR seq_ids;
DO NEXT VALUE FOR seq_ids;
CREATE TABLE hist (id INT PRIMARY KEY, v VARCHAR(400)) WITH SYSTEM VERSIONING;
INSERT INTO hist SELECT seq, CONCAT('v', seq) FROM seq_1_to_60;
UPDATE hist SET v = CONCAT(v, ' ', ${sq(MARKERS)}) WHERE id <= 40;
UPDATE hist SET v = 'again' WHERE id <= 20;
DELETE FROM hist WHERE id > 50;
CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(200)) ENGINE=InnoDB;
CREATE DEFINER='root'@'localhost' SQL SECURITY DEFINER VIEW v_texts AS SELECT id, t FROM texts WHERE t <> ${sq(MARKERS)};
DELIMITER //
CREATE DEFINER='root'@'localhost' PROCEDURE doc(IN who VARCHAR(20) CHARACTER SET latin1 COLLATE latin1_bin, OUT n INT)
COMMENT 'see the body'
BEGIN
  -- How to call me (a comment the server keeps):
  # hash comment; DELIMITER ;
  /* block comment
  UNLOCK TABLES; */
  SELECT ${sq(MARKERS)} AS usage_text;
  SELECT COUNT(*) INTO n FROM texts;
END//
CREATE DEFINER='root'@'localhost' FUNCTION greet(s VARCHAR(10) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin) RETURNS TEXT CHARSET latin1 DETERMINISTIC
BEGIN
  -- returns a latin1 text
  RETURN CONCAT('hi ', s, ${sq('\nDELIMITER ;\n')});
END//
CREATE DEFINER='root'@'localhost' TRIGGER texts_ai AFTER INSERT ON texts FOR EACH ROW
BEGIN
  -- audit every new text; the comment stays
  INSERT INTO audit (what) VALUES (CONCAT('new ', NEW.id, ${sq('\nUNLOCK TABLES;\n')}));
END//
DELIMITER ;
SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES,STRICT_TRANS_TABLES';
DELIMITER //
CREATE DEFINER='root'@'localhost' PROCEDURE nbe_proc()
BEGIN
  -- under NO_BACKSLASH_ESCAPES: a backslash ends nothing
  SELECT 'C:\\' AS path, 'DELIMITER ;
UNLOCK TABLES;
GRANT ALL ON *.* TO ''tenant''@''%'';' AS doc;
END//
DELIMITER ;
SET SESSION sql_mode = DEFAULT;
CREATE DEFINER='root'@'localhost' EVENT ev_nightly ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' ON COMPLETION PRESERVE DISABLE COMMENT ${sq('DELIMITER ;')} DO INSERT INTO audit (what) VALUES (${sq(MARKERS)});
`;

beforeAll(async () => {
  servers = await pool.start();
  await sql(`CREATE DATABASE ${DB} CHARACTER SET utf8mb4; CREATE DATABASE ${BIG} CHARACTER SET utf8mb4;`);
  await sql(CORPUS, DB);
  // Tens of MB of SQL: the loader's parts really split it.
  await sql(`CREATE TABLE rows_a (id INT PRIMARY KEY, v VARCHAR(200), KEY (v)) ENGINE=InnoDB;
    INSERT INTO rows_a SELECT seq, CONCAT(MD5(seq), ' it''s ;\\n);\\n ', REPEAT(CHAR(65 + seq % 26), 60)) FROM seq_1_to_150000;
    CREATE TABLE rows_b (id INT PRIMARY KEY, n BIGINT, t TEXT) ENGINE=MyISAM;
    INSERT INTO rows_b SELECT seq, seq * 7919, REPEAT(${sq('UNLOCK TABLES;\n')}, 3) FROM seq_1_to_100000;`, BIG);
  // A defaults file whose option the protocol connections cannot carry (compression): the rows
  // go over client processes instead, as on a server whose option files ask for TLS.
  const noWire = join(servers.mariadb.baseDir, 'no-wire.cnf');
  writeFileSync(noWire, '[client]\ncompress\n', { mode: 0o600 });
  sb = await pool.sandbox({ config: { databases: { postgresql: { enabled: false }, mysql: { include: [DB, BIG] } }, panel: { enabled: false } } });
  const dump = await sb.cli(['dump']);
  expect(dump.exitCode, dump.stderr).toBe(0);
}, 600_000);

afterAll(async () => {
  await pool.destroy();
});

const CASES = [
  { name: '1 connection', connections: 1, wire: true },
  { name: '2 connections', connections: 2, wire: true },
  { name: '4 connections', connections: 4, wire: true },
  { name: '2 connections, protocol refused', connections: 2, wire: false },
] as const;

describe('restore db gives back exactly what was dumped (MariaDB)', () => {
  for (const c of CASES) {
    it(`${c.name}: every object, row, comment and history row as before the dump`, async () => {
      const defaults = c.wire ? {} : { defaults_file: join(servers.mariadb.baseDir, 'no-wire.cnf') };
      sb.writeConfig({ databases: { postgresql: { enabled: false }, mysql: { include: [DB, BIG], ...defaults } }, panel: { enabled: false }, restore: { connections: c.connections } });
      for (const db of [DB, BIG]) {
        const into = `${db}_r${c.connections}${c.wire ? '' : 'c'}`;
        const r = await sb.cli(['restore', 'db', db, '--into', into], { timeoutMs: 300_000 });
        expect(r.exitCode, r.stderr).toBe(0);
        expect(await mysqlFidelityFingerprint(servers.mariadb, into)).toEqual(await mysqlFidelityFingerprint(servers.mariadb, db));
        await servers.mariadb.sql(`DROP DATABASE \`${into}\``);
      }
      const log = readFileSync(sb.logFile, 'utf8');
      if (!c.wire) expect(log).toMatch(/not protocol connections \(the option files set compress\)/);
      // The map proved every statement: the rows really were spread, not sent as one stream.
      expect(log).not.toMatch(/through one client as it is/);
    }, 600_000);
  }

  it('the corpus holds what it claims: comments in bodies, history rows, every marker in a routine', async () => {
    const fp = await mysqlFidelityFingerprint(servers.mariadb, DB);
    expect(fp['procedure doc']).toContain('-- How to call me');
    expect(fp['procedure doc']).toContain('# hash comment; DELIMITER ;');
    expect(fp['trigger texts_ai']).toContain('-- audit every new text');
    expect(fp['procedure nbe_proc']).toContain('NO_BACKSLASH_ESCAPES');
    expect(fp['table hist history']).toMatch(/^1[0-9]{2} /); // 60 rows, 40 + 20 updates, 10 deletes: 120 versions
    expect(fp.parameters).toMatch(/doc 1 who varchar\(20\) latin1 latin1_bin/);
    const big = await mysqlFidelityFingerprint(servers.mariadb, BIG);
    expect(Number(big['table rows_a rows']) + Number(big['table rows_b rows'])).toBeGreaterThanOrEqual(200_000);
  }, 60_000);
});
