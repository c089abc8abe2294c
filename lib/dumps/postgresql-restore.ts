import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeToFile } from '../run/pipeline.js';
import { run } from '../run/run.js';
import { decompressorCommand } from './compress.js';
import type { PostgresSession } from './postgresql.js';
import type { Compression, DatabaseState, DumpFile, RestoreSession } from '../model/kind.js';

/**
 * The restore half of the PostgreSQL kind: pg_restore of the server's own major version (the
 * session picked it), in one transaction, so a failed load leaves the database empty rather
 * than half-filled. Owners and grantees the dump names come back from the globals export first.
 * Every tool runs as `postgres` over a local socket (peer authentication) and reads the dump on
 * stdin: the dumps stay root's 0600 files.
 */
export function withPostgresRestore(s: PostgresSession): RestoreSession {
  const maintenance = s.maintenanceDb;
  const hexName = (n: string): string => `convert_from(decode('${Buffer.from(n, 'utf8').toString('hex')}', 'hex'), 'UTF8')`;
  const major = Number(/^(\d+)/.exec(s.versions.server)?.[1] ?? 0);
  return {
    kind: 'postgresql',
    versions: s.versions,
    where: s.where,
    listDatabases: (signal) => s.listDatabases(signal),
    planDatabase: (database) => s.planDatabase(database),
    planServerWide: () => s.planServerWide(),
    close: () => s.close(),
    async databaseState(database, signal): Promise<DatabaseState> {
      const exists = (await s.sql(maintenance, `SELECT count(*) FROM pg_database WHERE datname = ${hexName(database)}`, signal)).trim();
      if (exists === '0') return 'missing';
      const objects = await s.sql(
        database,
        `SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${USER_SCHEMA}) + ` +
          `(SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE ${USER_SCHEMA})`,
        signal,
      );
      return Number(objects.trim()) > 0 ? 'non-empty' : 'empty';
    },
    async createDatabase(database, _from, signal) {
      await s.sql(maintenance, `CREATE DATABASE ${pgIdent(database)}`, signal);
    },
    async dropDatabase(database, signal) {
      // FORCE (13+): a restore must not wait for the site's open connections.
      await s.sql(maintenance, `DROP DATABASE IF EXISTS ${pgIdent(database)}${major >= 13 ? ' WITH (FORCE)' : ''}`, signal);
    },
    async ensureAccounts(_database, dump, accounts, signal) {
      if (!accounts) return [];
      const scratch = await mkdtemp(join(tmpdir(), 'asb-pgacc-'));
      try {
        await pipeToFile([decompressorCommand(packing(accounts), accounts.path)], join(scratch, 'globals.sql'), { signal });
        const globals = await readFile(join(scratch, 'globals.sql'), 'utf8');
        // The schema part of the dump only (no data): who owns and who is granted what.
        await pipeToFile([decompressorCommand(packing(dump), dump.path), s.tool('pgRestore', ['--schema-only', '--file=-'])], join(scratch, 'schema.sql'), { signal });
        const schema = await readFile(join(scratch, 'schema.sql'), 'utf8');
        const existing = new Set(
          (await s.sql(maintenance, `SELECT encode(convert_to(rolname, 'UTF8'), 'hex') FROM pg_roles`, signal))
            .split('\n')
            .filter(Boolean)
            .map((h) => Buffer.from(h.trim(), 'hex').toString('utf8')),
        );
        const plan = roleStatements(globals, referencedRoles(schema), existing);
        // Password hashes: on stdin, never on argv.
        if (plan.statements.length) {
          await run(s.tool('psql', ['-X', '-q', '--no-password', '-v', 'ON_ERROR_STOP=1'], maintenance), { input: plan.statements.join('\n') + '\n', signal });
        }
        return plan.created;
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
    },
    async load(database, dump, signal) {
      const scratch = await mkdtemp(join(tmpdir(), 'asb-pgload-'));
      try {
        const args = ['--no-password', '--exit-on-error', '--single-transaction', `--dbname=${conninfoDbname(database)}`];
        await pipeToFile([decompressorCommand(packing(dump), dump.path), s.tool('pgRestore', args)], join(scratch, 'out'), { signal });
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
    },
  };
}

const USER_SCHEMA = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'";

export function pgIdent(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}

/** `dbname='…'` as a conninfo string: a name with `=` or spaces is never parsed as options. */
export function conninfoDbname(name: string): string {
  return `dbname='${name.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

function packing(dump: DumpFile): Compression {
  return dump.compression === 'internal' ? 'none' : dump.compression;
}

const IDENT = '(?:"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*)';

function unident(text: string): string {
  return text.startsWith('"') ? text.slice(1, -1).replace(/""/g, '"') : text.toLowerCase();
}

const NOT_A_ROLE = new Set(['public', 'current_user', 'session_user', 'current_role']);

/** Roles a pg_restore script names as owners or grantees. */
export function referencedRoles(script: string): Set<string> {
  const roles = new Set<string>();
  const add = (raw: string): void => {
    const r = unident(raw.trim());
    if (!NOT_A_ROLE.has(r.toLowerCase()) && !r.startsWith('pg_')) roles.add(r);
  };
  for (const m of script.matchAll(new RegExp(`OWNER TO (${IDENT})`, 'g'))) add(m[1]!);
  for (const m of script.matchAll(new RegExp(`FOR ROLE (${IDENT})`, 'g'))) add(m[1]!);
  for (const m of script.matchAll(/^GRANT .* TO (.+?)(?: WITH GRANT OPTION)?;$/gm)) {
    for (const g of m[1]!.matchAll(new RegExp(IDENT, 'g'))) add(g[0]);
  }
  return roles;
}

/**
 * From `pg_dumpall --globals-only`: CREATE ROLE and ALTER ROLE of every needed role the server
 * lacks, and the memberships of needed roles (the roles they are members of are needed too).
 */
export function roleStatements(globals: string, needed: ReadonlySet<string>, existing: ReadonlySet<string>): { statements: string[]; created: string[] } {
  const create = new Map<string, string[]>();
  const memberships: { role: string; member: string; sql: string }[] = [];
  for (const line of globals.split('\n')) {
    let m = new RegExp(`^(?:CREATE|ALTER) ROLE (${IDENT})[ ;]`).exec(line);
    if (m) {
      const r = unident(m[1]!);
      create.set(r, [...(create.get(r) ?? []), line]);
      continue;
    }
    m = new RegExp(`^GRANT (${IDENT}) TO (${IDENT})`).exec(line);
    if (m) memberships.push({ role: unident(m[1]!), member: unident(m[2]!), sql: line.replace(/ GRANTED BY \S+;$/, ';') });
  }
  const want = new Set(needed);
  for (let grew = true; grew; ) {
    grew = false;
    for (const g of memberships) {
      if (want.has(g.member) && !want.has(g.role)) {
        want.add(g.role);
        grew = true;
      }
    }
  }
  const created = [...want].filter((r) => !existing.has(r) && create.has(r)).sort();
  const statements = created.flatMap((r) => create.get(r)!);
  const present = new Set([...existing, ...created]);
  for (const g of memberships) if (created.includes(g.member) && present.has(g.role)) statements.push(g.sql);
  return { statements, created };
}
