import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../lib/config/load.js';
import type { EngineName } from '../../lib/engine/types.js';
import { buildApiscpTree } from '../../lib/demo/apiscp-tree.js';
import { cli, engineRepository, type EngineSandbox, mysqlFingerprint, pgFingerprint, REPO, seedMysql, seedPostgres, writeConfig, type CliResult } from './e2e.js';
import type { Servers } from '../../lib/throwaway/servers.js';

/**
 * One sandbox per engine for the restore tests: an ApisCP tree with three sites, the stand-in
 * panel saying which databases each site owns, seeded databases (hostile names, a DEFINER view,
 * a site role), and a config for the engine. Shared by every restore case of that engine.
 */

/** site2's databases: a hostile MariaDB name and a PostgreSQL one owned by the site's role. */
export const SITE_DBS = {
  site1: { mysql: ['site1_shop'], pgsql: [] as string[] },
  site2: { mysql: ['site2_db', `site2_-x $(id) 'q' ü`], pgsql: ['site2_blog'] },
  site3: { mysql: [] as string[], pgsql: ['site3_app'] },
};
export const SITE2_USER = "site2_u";
export const SITE2_ROLE = 'site2 role';

const qm = (n: string): string => '`' + n.replace(/`/g, '``') + '`';
const qp = (n: string): string => '"' + n.replace(/"/g, '""') + '"';

export interface RestoreFixture extends EngineSandbox {
  readonly env: Record<string, string>;
  cli(args: readonly string[]): Promise<CliResult>;
}

export async function seedSiteDatabases(servers: Servers): Promise<void> {
  for (const site of Object.values(SITE_DBS)) {
    for (const db of site.mysql) await seedMysql(servers.mariadb, db, 20);
  }
  // A table of ~5 MiB of SQL: site2_db's dump is big enough for the restore map written beside it
  // (load/dump-map.ts), so every engine's restore fetches and uses one.
  await servers.mariadb.sql(`USE ${qm('site2_db')}; CREATE TABLE ${qm('site2_db')}.bulk (id INT PRIMARY KEY, body TEXT) ENGINE=InnoDB; INSERT INTO ${qm('site2_db')}.bulk SELECT seq, REPEAT(MD5(seq), 8) FROM seq_1_to_20000;`);
  // A view with a DEFINER that only exists as long as the site's user does.
  await servers.mariadb.sql(`CREATE USER '${SITE2_USER}'@'localhost' IDENTIFIED BY 'pw'; GRANT ALL ON \`site2\\_db\`.* TO '${SITE2_USER}'@'localhost';
    CREATE DEFINER='${SITE2_USER}'@'localhost' SQL SECURITY DEFINER VIEW ${qm('site2_db')}.definer_view AS SELECT id FROM ${qm('site2_db')}.items;`);
  await servers.postgres.sql(`CREATE ROLE ${qp(SITE2_ROLE)} LOGIN PASSWORD 'pw'`);
  for (const site of Object.values(SITE_DBS)) {
    for (const db of site.pgsql) await seedPostgres(servers.postgres, db, 20);
  }
  await servers.postgres.sql(`ALTER TABLE items OWNER TO ${qp(SITE2_ROLE)}; ALTER TABLE audit OWNER TO ${qp(SITE2_ROLE)}`, 'site2_blog');
}

/** Row checksums, views and triggers of every site database: what a restore must bring back. */
export async function siteFingerprints(servers: Servers, site: keyof typeof SITE_DBS): Promise<Record<string, Record<string, string>>> {
  const out: Record<string, Record<string, string>> = {};
  for (const db of SITE_DBS[site].mysql) out[`mysql:${db}`] = await mysqlFingerprint(servers.mariadb, db);
  for (const db of SITE_DBS[site].pgsql) out[`postgresql:${db}`] = await pgFingerprint(servers.postgres, db);
  return out;
}

export async function createRestoreFixture(base: string, engine: EngineName, servers: Servers, opts: { uidBase?: number } = {}): Promise<RestoreFixture> {
  const dir = join(base, engine);
  const root = join(dir, 'root');
  mkdirSync(dir, { recursive: true });
  chmodSync(base, 0o755);
  const tree = await buildApiscpTree(root, { sites: 3, uidBase: opts.uidBase });
  const engineConfig = await engineRepository(engine, dir, `restore pass '"$(x)`);
  const panelState = join(dir, 'panel.json');
  const sites = Object.fromEntries(
    tree.sites.map((s) => [s.id, { domain: s.domain, active: true, admin: s.admin, prefix: `${s.id}_`, mysql: SITE_DBS[s.id as keyof typeof SITE_DBS].mysql, pgsql: SITE_DBS[s.id as keyof typeof SITE_DBS].pgsql }]),
  );
  writeFileSync(panelState, JSON.stringify({ scopes: { 'backups.automatic-database-exports': false }, sites }, null, 2));
  // The panel stand-in behind a wrapper, as the demo does: Bacula's file daemon runs our hook
  // with its own environment, so the config must name cpcmd and the wrapper its state.
  const cpcmd = join(dir, 'cpcmd');
  writeFileSync(
    cpcmd,
    `#!/bin/sh\nFAKE_APISCP_STATE='${panelState}' FAKE_APISCP_LOG='${join(dir, 'panel.log')}' FAKE_APISCP_HOME='${tree.home}' exec '${process.execPath}' '${join(REPO, 'sandbox/fake-apiscp/cpcmd')}' "$@"\n`,
    { mode: 0o755 },
  );
  const env = { ...(process.env as Record<string, string>) };
  const config = writeConfig(join(dir, 'etc/config.yaml'), { root, servers, engine, extra: { ...engineConfig, panel: { enabled: true, cpcmd, owner_exports: false } } });
  return { engine, dir, root, tree, config, loaded: loadConfig({ file: config }), env, cli: (args) => cli(['--config', config, ...args], { env }) };
}
