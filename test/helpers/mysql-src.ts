import { join } from 'node:path';
import { configSchema } from '../../lib/config/schema.js';
import { resolvePaths } from '../../lib/config/paths.js';
import type { LoadedConfig } from '../../lib/config/load.js';

/**
 * The `src` database the loader and performance tests dump and load: several INSERT statements per
 * table (more than one net buffer), values with newlines, quotes, ';' and ');' inside, binary, a
 * MyISAM table, a trigger whose body INSERTs, a procedure in a DELIMITER block, a view.
 */
export const SRC_DATABASE_SQL = `
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
  `;

/** A config for MariaDB only, on `socket`, rooted in `work`. */
export function mysqlOnlyConfig(work: string, socket: string, extra: Record<string, unknown> = {}, mysql: Record<string, unknown> = {}): LoadedConfig {
  const config = configSchema.parse({
    paths: { root: work },
    panel: { enabled: false },
    databases: { postgresql: { enabled: false }, mysql: { enabled: true, socket, defaults_file: join(work, 'absent.cnf'), ...mysql } },
    ...extra,
  });
  return { config, file: undefined, paths: resolvePaths(config) };
}
