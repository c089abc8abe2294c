import { join } from 'node:path';
import { osUser } from '../../lib/os-user.js';
import { cmd } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';
import type { PostgresServer } from '../../lib/throwaway/postgres.js';

/**
 * What a PostgreSQL database is, read from the server itself (never from our dumps or our
 * code): the schema as `pg_dump --schema-only` prints it (owners, grants, comments, policies,
 * rules, triggers, publications, default privileges…), an md5 of every table's rows, every
 * large object with its owner, privileges and bytes, every sequence's state, and the database's
 * own properties. The database's name appears nowhere, so a copy under another name compares
 * equal when it is one.
 */
export type PgFingerprint = Record<string, string>;

const lit = (s: string): string => `'${s.replace(/'/g, "''")}'`;
const DB = (db: string): string => `convert_from(decode('${Buffer.from(db).toString('hex')}', 'hex'), 'UTF8')`;

export async function pgDatabaseFingerprint(server: PostgresServer, db: string): Promise<PgFingerprint> {
  const out: PgFingerprint = {};
  out.schema = await schemaText(server, db);
  const tables = (await server.sql(`SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' ORDER BY 1`, db))
    .split('\n')
    .filter(Boolean);
  for (const t of tables) {
    // Row text through a binary-safe hash; count as well so an empty table cannot hide.
    out[`rows ${t}`] = await server.sql(`SELECT count(*) || ' ' || md5(coalesce(string_agg(md5(x::text), '' ORDER BY md5(x::text)), '')) FROM ${t} x`, db);
  }
  out.largeObjects = await server.sql(
    `SELECT string_agg(m.oid::text || ' ' || pg_get_userbyid(m.lomowner) || ' ' || coalesce(m.lomacl::text, '-') || ' ' || md5(lo_get(m.oid)) || ' ' || coalesce(obj_description(m.oid, 'pg_largeobject'), '-'), E'\\n' ORDER BY m.oid) FROM pg_largeobject_metadata m`,
    db,
  );
  out.sequences = await server.sql(`SELECT string_agg(format('%I.%I', schemaname, sequencename) || ' ' || coalesce(last_value::text, 'unset'), E'\\n' ORDER BY schemaname, sequencename) FROM pg_sequences`, db);
  out.database = await server.sql(
    `SELECT concat_ws(E'\\n', 'encoding ' || pg_encoding_to_char(d.encoding), 'collate ' || d.datcollate, 'ctype ' || d.datctype, 'provider ' || d.datlocprovider::text,
       'icu ' || coalesce(d.daticulocale, '-'), 'owner ' || pg_get_userbyid(d.datdba), 'connlimit ' || d.datconnlimit, 'template ' || d.datistemplate,
       'acl ' || coalesce((SELECT string_agg(a::text, ' ' ORDER BY a::text) FROM unnest(d.datacl) a), 'default'),
       'comment ' || coalesce(shobj_description(d.oid, 'pg_database'), '-'),
       'settings ' || coalesce((SELECT string_agg(coalesce(pg_get_userbyid(NULLIF(s.setrole, 0)), '*') || ': ' || array_to_string(s.setconfig, ', '), '; ' ORDER BY coalesce(pg_get_userbyid(NULLIF(s.setrole, 0)), '*')) FROM pg_db_role_setting s WHERE s.setdatabase = d.oid), '-'))
     FROM pg_database d WHERE d.datname = ${DB(db)}`,
  );
  return out;
}

/** pg_dump --schema-only of `db`, without its comment lines and \restrict keys (random per run). */
async function schemaText(server: PostgresServer, db: string): Promise<string> {
  const pg = osUser('postgres')!;
  const env = { PGHOST: server.socketDir, PGPORT: String(server.port), PGUSER: 'postgres', PGDATABASE: db, HOME: pg.home };
  const r = await run(cmd(join(server.binDir, 'pg_dump'), ['--schema-only', '--no-password'], { env, uid: pg.uid, gid: pg.gid, cwd: '/' }), { timeoutMs: 120_000 });
  return r.stdout
    .split('\n')
    .filter((l) => !l.startsWith('--') && !/^\\(un)?restrict /.test(l) && l.trim() !== '')
    .join('\n');
}

/** The named roles' attributes, memberships and comments (what the globals export brings back). */
export async function pgRoles(server: PostgresServer, roles: readonly string[]): Promise<string> {
  return server.sql(
    `SELECT string_agg(r.rolname || ' super=' || r.rolsuper || ' login=' || r.rolcanlogin || ' createdb=' || r.rolcreatedb || ' connlimit=' || r.rolconnlimit
       || ' comment=' || coalesce(shobj_description(r.oid, 'pg_authid'), '-')
       || ' member of=' || coalesce((SELECT string_agg(g.rolname, ',' ORDER BY g.rolname) FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid), '-'), E'\\n' ORDER BY r.rolname)
     FROM pg_roles r WHERE r.rolname IN (${roles.map(lit).join(', ')})`,
  );
}
