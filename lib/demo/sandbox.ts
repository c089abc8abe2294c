import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import type { KindName } from '../model/kind.js';
import { dirname, join } from 'node:path';
import { buildApiscpTree, type TreeInfo } from './apiscp-tree.js';
import type { MariadbServer } from '../throwaway/mariadb.js';
import type { PostgresServer } from '../throwaway/postgres.js';
import { startServers } from '../throwaway/servers.js';
import { packagePaths } from '../package-paths.js';

/**
 * The demo's pretend server: an ApisCP tree with three sites, a MariaDB and a PostgreSQL server
 * with each site's databases, and the test stand-in for cpcmd installed where ApisCP keeps its
 * own (usr/local/apnscp/bin/cmd under the sandbox root).
 */
export interface DemoSandbox {
  readonly root: string;
  readonly tree: TreeInfo;
  readonly mysql: MariadbServer;
  readonly postgresql: PostgresServer;
  readonly cpcmd: string;
  /** The stand-in's backup_dbs.php, run by `/bin/sh` (databases.apnscp.php) in the demo. */
  readonly backupDbs: string;
  readonly panelState: string;
  /** Databases by kind, with the site that owns them (undefined: nobody, goes to _server). */
  readonly databases: readonly { kind: KindName; name: string; site?: string }[];
  stop(): Promise<void>;
}

const MYSQL_SEED: Record<string, string> = {
  site1_wordpress: `
    CREATE TABLE wp_posts (id INT AUTO_INCREMENT PRIMARY KEY, title VARCHAR(200), body MEDIUMTEXT, created DATETIME) ENGINE=InnoDB;
    INSERT INTO wp_posts (title, body, created) SELECT CONCAT('Post ', seq), REPEAT(CONCAT('Lorem ipsum ', seq, ' — ünïcödé '), 40), '2026-01-01' + INTERVAL seq HOUR FROM seq_1_to_2000;
    CREATE TABLE wp_options (option_name VARCHAR(191) PRIMARY KEY, option_value LONGTEXT) ENGINE=InnoDB;
    INSERT INTO wp_options VALUES ('siteurl', 'https://example1.test'), ('blogname', 'It''s "quoted"');
    CREATE VIEW recent_posts AS SELECT id, title FROM wp_posts WHERE created > '2026-03-01';
    CREATE TRIGGER wp_posts_title BEFORE INSERT ON wp_posts FOR EACH ROW SET NEW.title = TRIM(NEW.title);`,
  site2_shop: `
    CREATE TABLE orders (id INT PRIMARY KEY, total DECIMAL(10,2), receipt BLOB) ENGINE=InnoDB;
    INSERT INTO orders SELECT seq, seq * 1.25, UNHEX(SHA2(seq, 256)) FROM seq_1_to_5000;
    CREATE TABLE legacy_log (id INT PRIMARY KEY, line VARCHAR(255)) ENGINE=MyISAM;
    INSERT INTO legacy_log SELECT seq, CONCAT('line ', seq) FROM seq_1_to_1000;`,
  analytics: `
    CREATE TABLE hits (day DATE, path VARCHAR(255), n INT, PRIMARY KEY (day, path)) ENGINE=InnoDB;
    INSERT INTO hits SELECT '2026-01-01' + INTERVAL (seq % 300) DAY, CONCAT('/page/', seq), seq FROM seq_1_to_3000;`,
};

const PG_SEED: Record<string, string> = {
  site3_app: `
    CREATE TABLE users (id serial PRIMARY KEY, email text UNIQUE, avatar bytea, joined timestamptz DEFAULT '2026-01-01');
    INSERT INTO users (email, avatar) SELECT 'user' || g || '@example3.test', decode(md5(g::text), 'hex') FROM generate_series(1, 3000) g;
    CREATE SCHEMA billing;
    CREATE TABLE billing."invoices €" (id bigserial PRIMARY KEY, user_id int REFERENCES users, amount numeric(10,2));
    INSERT INTO billing."invoices €" (user_id, amount) SELECT g, g * 0.5 FROM generate_series(1, 3000) g;`,
  site1_stats: `
    CREATE TABLE visits (id bigserial PRIMARY KEY, at timestamptz, path text);
    INSERT INTO visits (at, path) SELECT '2026-01-01'::timestamptz + g * interval '1 minute', '/p/' || g FROM generate_series(1, 2000) g;`,
};

/** The ApisCP stand-in, shipped with the package (sandbox/fake-apiscp; dist/lib/demo → package root). */
export function fakeApiscpDir(): string {
  return join(packagePaths().root, 'sandbox', 'fake-apiscp') + '/';
}

export async function buildDemoSandbox(root: string): Promise<DemoSandbox> {
  const tree = await buildApiscpTree(root, { sites: 3 });
  const servers = await startServers();
  const { mariadb: mysql, postgres: postgresql } = servers;
  for (const [db, sql] of Object.entries(MYSQL_SEED)) await mysql.sql(`CREATE DATABASE \`${db}\`; USE \`${db}\`; ${sql}`);
  for (const [db, sql] of Object.entries(PG_SEED)) {
    await postgresql.sql(`CREATE DATABASE "${db}"`);
    await postgresql.sql(sql, db);
  }
  const databases = [
    { kind: 'mysql' as const, name: 'site1_wordpress', site: 'site1' },
    { kind: 'mysql' as const, name: 'site2_shop', site: 'site2' },
    { kind: 'mysql' as const, name: 'analytics' },
    { kind: 'postgresql' as const, name: 'site3_app', site: 'site3' },
    { kind: 'postgresql' as const, name: 'site1_stats', site: 'site1' },
  ];

  // The panel: state for the stand-in, and a wrapper where ApisCP keeps its cmd. cron's
  // environment carries no variables, so the wrapper names the state file and calls node by path.
  const panelState = join(root, 'var/lib/fake-apiscp/state.json');
  const namesOf = (kind: KindName, site: string): string[] => databases.filter((d) => d.kind === kind && d.site === site).map((d) => d.name);
  const sites = Object.fromEntries(
    tree.sites.map((s) => [
      s.id,
      {
        domain: s.domain,
        active: true,
        admin: s.admin,
        prefix: `${s.id}_`,
        mysql: namesOf('mysql', s.id),
        pgsql: namesOf('postgresql', s.id),
      },
    ]),
  );
  mkdirSync(dirname(panelState), { recursive: true });
  writeFileSync(panelState, JSON.stringify({ scopes: { 'backups.automatic-database-exports': true }, sites }, null, 2));
  // The stand-ins where the panel keeps its cmd and backup_dbs.php (the owners' exports run after ours).
  // backup_dbs.php is a symlink to backup_dbs.mjs in the checkout, and npm pack leaves symlinks out.
  const standIn = (path: string, program: string, file = program): string => {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(
      path,
      [
        '#!/bin/sh',
        `# apiscp-backup demo: the test stand-in for ApisCP's ${program} (see sandbox/fake-apiscp/README.md).`,
        `FAKE_APISCP_STATE='${panelState}' FAKE_APISCP_LOG='${join(dirname(panelState), 'calls.log')}' FAKE_APISCP_HOME='${tree.home}' \\`,
        `  exec '${process.execPath}' '${join(fakeApiscpDir(), file)}' "$@"`,
        '',
      ].join('\n'),
    );
    chmodSync(path, 0o755);
    return path;
  };
  const cpcmd = standIn(join(root, 'usr/local/apnscp/bin/cmd'), 'cpcmd');
  const backupDbs = standIn(join(root, 'usr/local/apnscp/bin/scripts/backup_dbs.php'), 'backup_dbs.php', 'backup_dbs.mjs');
  return {
    backupDbs,
    root,
    tree,
    mysql,
    postgresql,
    cpcmd,
    panelState,
    databases,
    stop: () => servers.destroy(),
  };
}
