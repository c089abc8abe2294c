import type { MariadbServer } from '../../lib/throwaway/mariadb.js';

/**
 * Benchmark data, generated inside the server: every row comes from `INSERT … SELECT` over the
 * Sequence engine's `seq_A_to_B` tables, so Node never builds rows. The shape imitates a hosting
 * server: many small WordPress-like databases and a few large ones, InnoDB tables with ints,
 * varchars, text and an incompressible blob column, and a MyISAM table in some databases so
 * mariadb-dump's --lock-tables path is exercised.
 */
export interface BenchDb {
  readonly name: string;
  readonly targetMb: number;
  readonly myisam: boolean;
  /** Table data after generation: SUM(DATA_LENGTH) after ANALYZE TABLE (InnoDB .ibd files are
   *  mostly preallocated space, so file sizes would overstate it 2-3x). */
  dataBytes: number;
}

/** Approximate on-disk bytes per row, used to turn a size into row counts (measured afterwards). */
const ROW_BYTES = { posts: 760, meta: 150, attach: 900, stats: 140 } as const;
/** Rows per INSERT statement, so a 1 GB database is not one giant transaction. */
const CHUNK_ROWS = 100_000;

const PHRASE = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit. ';

/** Sizes falling off like 1/(rank+1)^1.2 (a few large, many small), shuffled over the names. */
export function planDatabases(count: number, totalMb: number, seed = 7): BenchDb[] {
  const weights = Array.from({ length: count }, (_, i) => 1 / Math.pow(i + 1, 1.2));
  const sum = weights.reduce((a, b) => a + b, 0);
  const random = mulberry32(seed);
  for (let i = weights.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [weights[i], weights[j]] = [weights[j]!, weights[i]!];
  }
  return weights.map((w, i) => ({
    name: `site${i + 1}_wp`,
    targetMb: Math.max(0.25, (totalMb * w) / sum),
    // Every 7th database keeps a MyISAM table (old plugins still create them).
    myisam: i % 7 === 3,
    dataBytes: 0,
  }));
}

export function bigDatabase(mb: number): BenchDb {
  return { name: 'bigsite_wp', targetMb: mb, myisam: false, dataBytes: 0 };
}

/** Create and fill the databases, `parallel` at a time. */
export async function generate(server: MariadbServer, dbs: readonly BenchDb[], parallel = 2): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < dbs.length) await fill(server, dbs[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(parallel, dbs.length) }, worker));
  for (const db of dbs) db.dataBytes = await dataLength(server, db.name);
}

async function dataLength(server: MariadbServer, name: string): Promise<number> {
  const tables = ['wp_posts', 'wp_postmeta', 'wp_attachments', 'wp_options'];
  await server.sql(`ANALYZE TABLE ${tables.join(', ')}`, name);
  const out = await server.sql(`SELECT SUM(DATA_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '${name}'`);
  return Number(out.trim());
}

async function fill(server: MariadbServer, db: BenchDb): Promise<void> {
  const bytes = db.targetMb * 1024 * 1024;
  const share = db.myisam ? { posts: 0.5, meta: 0.2, attach: 0.12, stats: 0.18 } : { posts: 0.68, meta: 0.2, attach: 0.12, stats: 0 };
  const rows = (k: keyof typeof ROW_BYTES): number => Math.max(10, Math.round((bytes * share[k]) / ROW_BYTES[k]));
  await server.sql(`CREATE DATABASE \`${db.name}\``);
  const ddl = [
    `CREATE TABLE wp_posts (ID BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, post_author BIGINT UNSIGNED NOT NULL,
       post_date DATETIME NOT NULL, post_status VARCHAR(20) NOT NULL, post_title VARCHAR(255) NOT NULL,
       post_content LONGTEXT NOT NULL, comment_count INT NOT NULL, KEY (post_author), KEY (post_status, post_date)) ENGINE=InnoDB`,
    `CREATE TABLE wp_postmeta (meta_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, post_id BIGINT UNSIGNED NOT NULL,
       meta_key VARCHAR(255), meta_value LONGTEXT, KEY (post_id)) ENGINE=InnoDB`,
    `CREATE TABLE wp_attachments (id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, file_name VARCHAR(200) NOT NULL,
       mime VARCHAR(50) NOT NULL, data BLOB NOT NULL) ENGINE=InnoDB`,
    `CREATE TABLE wp_options (option_id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, option_name VARCHAR(191) NOT NULL UNIQUE,
       option_value LONGTEXT NOT NULL, autoload VARCHAR(20) NOT NULL DEFAULT 'yes') ENGINE=InnoDB`,
    `CREATE VIEW v_published AS SELECT ID, post_title, post_date FROM wp_posts WHERE post_status = 'publish'`,
    `INSERT INTO wp_options (option_name, option_value) SELECT CONCAT('option_', seq), REPEAT(MD5(seq), 1 + seq % 20) FROM seq_1_to_400`,
  ];
  if (db.myisam) {
    ddl.push(`CREATE TABLE wp_statistics (id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, visited DATETIME NOT NULL,
       ip VARCHAR(45) NOT NULL, uri VARCHAR(255) NOT NULL, agent VARCHAR(255) NOT NULL, KEY (visited)) ENGINE=MyISAM`);
  }
  await server.sql(ddl.join(';\n') + ';', db.name);

  const inserts: string[] = [];
  chunks(rows('posts'), (a, b) =>
    inserts.push(`INSERT INTO wp_posts (post_author, post_date, post_status, post_title, post_content, comment_count)
      SELECT 1 + seq % 37, '2015-01-01' + INTERVAL seq MINUTE, ELT(1 + seq % 4, 'publish', 'draft', 'inherit', 'trash'),
        CONCAT('Post ', seq, ': ', SUBSTR(MD5(seq), 1, 12), ' ', SUBSTR('${PHRASE}', 1 + seq % 40)),
        CONCAT(REPEAT('${PHRASE}', 1 + seq % 12), MD5(seq), ' <p>', SHA2(seq, 256), '</p> ',
          REPEAT(CONCAT(MD5(seq * 7), ' '), seq % 6), SUBSTR('${PHRASE}', 1 + seq % 50)),
        seq % 17 FROM seq_${a}_to_${b}`),
  );
  chunks(rows('meta'), (a, b) =>
    inserts.push(`INSERT INTO wp_postmeta (post_id, meta_key, meta_value)
      SELECT 1 + seq DIV 3, ELT(1 + seq % 5, '_edit_lock', '_thumbnail_id', '_wp_attached_file', '_wp_page_template', '_edit_last'),
        CONCAT('a:2:{s:4:"file";s:', seq, ':"', MD5(seq), '.jpg";s:5:"sizes";i:', seq % 9, ';}') FROM seq_${a}_to_${b}`),
  );
  chunks(rows('attach'), (a, b) =>
    inserts.push(`INSERT INTO wp_attachments (file_name, mime, data)
      SELECT CONCAT('upload-', seq, '.jpg'), 'image/jpeg', RANDOM_BYTES(512 + seq % 512) FROM seq_${a}_to_${b}`),
  );
  if (db.myisam) {
    chunks(rows('stats'), (a, b) =>
      inserts.push(`INSERT INTO wp_statistics (visited, ip, uri, agent)
        SELECT '2023-01-01' + INTERVAL seq SECOND, CONCAT('10.', seq % 256, '.', seq % 199, '.', seq % 97),
          CONCAT('/', SUBSTR(MD5(seq % 5000), 1, 10), '/?p=', seq % 5000),
          ELT(1 + seq % 3, 'Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0', 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1) Safari/604.1', 'Googlebot/2.1')
        FROM seq_${a}_to_${b}`),
    );
  }
  for (const sql of inserts) await server.sql(sql, db.name);
}

function chunks(total: number, each: (from: number, to: number) => void): void {
  for (let a = 1; a <= total; a += CHUNK_ROWS) each(a, Math.min(total, a + CHUNK_ROWS - 1));
}

/** A seeded PRNG (mulberry32): the same data from the same seed, in the bench and in tests. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * `count` tiny site databases (a hosting server's long tail: a few tables, a few rows each),
 * created by one client session per 100 databases: generation is not what we measure.
 */
export async function generateTiny(server: MariadbServer, count: number): Promise<string[]> {
  const names = Array.from({ length: count }, (_, i) => `tiny${String(i + 1).padStart(4, '0')}_wp`);
  for (let i = 0; i < names.length; i += 100) {
    const sql = names.slice(i, i + 100).flatMap((n) => [
      `CREATE DATABASE \`${n}\``,
      `USE \`${n}\``, // seq_1_to_N (the Sequence engine) exists only inside a database
      `CREATE TABLE \`${n}\`.wp_options (option_id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, option_name VARCHAR(191) NOT NULL UNIQUE, option_value LONGTEXT NOT NULL) ENGINE=InnoDB`,
      `CREATE TABLE \`${n}\`.wp_posts (ID BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, post_title VARCHAR(255) NOT NULL, post_content LONGTEXT NOT NULL) ENGINE=InnoDB`,
      `INSERT INTO \`${n}\`.wp_options (option_name, option_value) SELECT CONCAT('option_', seq), REPEAT(MD5(seq), 1 + seq % 5) FROM seq_1_to_40`,
      `INSERT INTO \`${n}\`.wp_posts (post_title, post_content) SELECT CONCAT('Hello world ', seq), REPEAT('${PHRASE}', 1 + seq % 8) FROM seq_1_to_10`,
    ]);
    await server.sql(sql.join(';\n') + ';');
  }
  return names;
}
