import { fromHex, hexOf, hexText, pgIdent } from './sql.js';
import { readFile, rm } from 'node:fs/promises';
import { makeTempDir } from '../../private-dir.js';
import { join } from 'node:path';
import { MissingDependencyError, RestoreError } from '../../errors.js';
import { codeRunDuringLoad } from './load-guard.js';
import { cmd, type Command } from '../../proc/command.js';
import { pipeToFile } from '../../proc/pipeline.js';
import { run } from '../../proc/run.js';
import { whichSystem } from '../../proc/which.js';
import { leadingWords, splitScript, unquoteIdent } from './script.js';
import { archiveFile, databaseScripts, runScript, type DatabaseScripts } from './database.js';
import { decompressorCommand } from '../../dumps/compress.js';
import type { PgSession } from './session.js';
import { preparePgAccounts, type PgAccountPlan } from './accounts-work.js';
import type { Compression, DatabaseState, DumpFile, RestoreSession } from '../../model/kind.js';
import { parsePgInventory, pgInventorySql, PSQL_ARGS } from './inventory.js';

/**
 * The restore half of the PostgreSQL kind: pg_restore of the server's own major version (the
 * session picked it), in one transaction, so a failed load leaves the database empty rather
 * than half-filled. Owners and grantees the dump names come back from the globals export first.
 * Every tool runs as `postgres` over a local socket (peer authentication) and reads the dump on
 * stdin: the dumps stay root's 0600 files.
 */
export function withPostgresRestore(s: PgSession): RestoreSession {
  const maintenance = s.maintenanceDb;
  const major = Number(/^(\d+)/.exec(s.versions.server)?.[1] ?? 0);
  const maintenancePsql = (): Command => s.tool('psql', PSQL_SCRIPT, maintenance);
  /** The roles the dump needs that the server lacks (from the run's globals), after the dump's first look. */
  const planRoles = async (dump: DumpFile, accounts: DumpFile | undefined, signal?: AbortSignal): Promise<PgAccountPlan> => {
    const scratch = await makeTempDir('asb-pgacc-');
    try {
      // Everything but the data, the database's own entries included (owner, grantees, role
      // settings, large objects' owners): read by pg_restore from the file itself, which it
      // can seek in, so it never reads the data and no feeder is cut off.
      const file = await archiveFile(dump, scratch, signal);
      const schema = await schemaOf(s, file, signal);
      refuseCodeRunDuringLoad(schema);
      if (!accounts) return { schema, statements: [], created: [] };
      await pipeToFile([decompressorCommand(packing(accounts), accounts.path)], join(scratch, 'globals.sql'), { signal, fsync: false });
      const globals = await readFile(join(scratch, 'globals.sql'), 'utf8');
      const existing = new Set(
        (await s.sql(maintenance, `SELECT ${hexOf('rolname')} FROM pg_roles`, signal))
          .split('\n')
          .filter(Boolean)
          .map((h) => fromHex(h.trim())),
      );
      return { schema, globals, ...roleStatements(globals, referencedRoles(schema), existing) };
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  };
  /** Password hashes on stdin, never on argv; one transaction: every role or none. */
  const createRoles = async (statements: readonly string[], signal?: AbortSignal): Promise<void> => {
    if (statements.length) await run(s.tool('psql', [...PSQL_SCRIPT, '--single-transaction'], maintenance), { input: statements.join('\n') + '\n', signal });
  };
  return {
    kind: 'postgresql',
    versions: s.versions,
    where: s.where,
    listDatabases: (signal) => s.listDatabases(signal),
    planDatabase: (database) => s.planDatabase(database),
    planServerWide: () => s.planServerWide(),
    close: () => s.close(),
    async databaseState(database, signal): Promise<DatabaseState> {
      const exists = (await s.sql(maintenance, `SELECT count(*) FROM pg_database WHERE datname = ${hexText(database)}`, signal)).trim();
      if (exists === '0') return 'missing';
      const objects = await s.sql(
        database,
        `SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${USER_SCHEMA}) + ` +
          `(SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE ${USER_SCHEMA})`,
        signal,
      );
      return Number(objects.trim()) > 0 ? 'non-empty' : 'empty';
    },
    async createDatabase(database, from, signal) {
      const scripts = from ? await readDatabaseScripts(s, from, database, signal) : {};
      if (scripts.create) await runScript(maintenancePsql(), catBin(), scripts.create, signal);
      else await s.sql(maintenance, `CREATE DATABASE ${pgIdent(database)}`, signal);
    },
    async dropDatabase(database, signal) {
      // A logical replication subscription keeps DROP DATABASE from working, even WITH (FORCE):
      // detach it from its slot first (the publisher's slot stays for the restored copy).
      const exists = (await s.sql(maintenance, `SELECT count(*) FROM pg_database WHERE datname = ${hexText(database)}`, signal)).trim() !== '0';
      if (exists) {
        const subs = (await s.sql(maintenance, `SELECT ${hexOf('s.subname')} FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid WHERE d.datname = ${hexText(database)}`, signal))
          .split('\n')
          .filter(Boolean)
          .map((h) => fromHex(h.trim()));
        for (const sub of subs) {
          // One statement per call: DROP SUBSCRIPTION refuses to run inside a transaction block.
          for (const step of ['DISABLE', 'SET (slot_name = NONE)']) await s.sql(database, `ALTER SUBSCRIPTION ${pgIdent(sub)} ${step}`, signal);
          await s.sql(database, `DROP SUBSCRIPTION ${pgIdent(sub)}`, signal);
        }
      }
      // FORCE (13+): a restore must not wait for the site's open connections.
      await s.sql(maintenance, `DROP DATABASE IF EXISTS ${pgIdent(database)}${major >= 13 ? ' WITH (FORCE)' : ''}`, signal);
    },
    async inventory(database, signal) {
      const started = Date.now();
      // One statement, so one snapshot; count(*) of every table may take minutes.
      const out = await run(s.tool('psql', PSQL_ARGS, database), { input: pgInventorySql() + ';\n', signal, timeoutMs: INVENTORY_TIMEOUT_MS });
      return parsePgInventory(out.stdout, 'snapshot', Date.now() - started);
    },
    async ensureAccounts(_database, dump, accounts, signal) {
      const plan = await planRoles(dump, accounts, signal);
      await createRoles(plan.statements, signal);
      return [...plan.created];
    },
    async checkLoadable(dump, signal) {
      await planRoles(dump, undefined, signal);
    },
    async prepareAccounts(request, dump, accounts, signal) {
      // The first look inside the dump (and the refusal of code COPY would run as superuser) now,
      // before anything changes; the roles are created right before the load, and dropped again
      // when the restore fails (they were missing before, so nothing else can depend on them).
      // Under the dumped name the roles there are compared with the backup's (postgresql-accounts-work.ts).
      const plan = await planRoles(dump, accounts, signal);
      return preparePgAccounts(s, request, plan, createRoles, signal);
    },
    async load(database, dump, signal) {
      const scratch = await makeTempDir('asb-pgload-');
      try {
        // Owners as dumped (never --no-owner): PostgreSQL then builds indexes and refreshes
        // materialized views as their owner, not as the superuser pg_restore connects as.
        refuseCodeRunDuringLoad(await schemaOf(s, await archiveFile(dump, scratch, signal), signal));
        const args = ['--no-password', '--exit-on-error', '--single-transaction', `--dbname=${conninfoDbname(database)}`];
        await pipeToFile([decompressorCommand(packing(dump), dump.path), s.tool('pgRestore', args)], join(scratch, 'out'), { signal });
        // Settings, limits, privileges and the comment of the database itself: after the content,
        // so a dumped default_transaction_read_only or CONNECTION LIMIT cannot get in its way.
        // Connected to the database itself, as pg_restore -C would be: the comment (a shared
        // catalog's text, kept as the bytes pg_dump read) then arrives unconverted.
        const scripts = await readDatabaseScripts(s, dump, database, signal);
        if (scripts.after) await runScript(s.tool('psql', PSQL_SCRIPT, database), catBin(), scripts.after, signal);
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
    },
  };
}

async function readDatabaseScripts(s: PgSession, dump: DumpFile, into: string, signal?: AbortSignal): Promise<DatabaseScripts> {
  const scratch = await makeTempDir('asb-pgarc-');
  try {
    return await databaseScripts(s.toolPath('pgRestore'), await archiveFile(dump, scratch, signal), into, signal);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** The archive's SQL without its data (pg_restore as us, on the file: no server, no pipe). */
async function schemaOf(s: PgSession, file: string, signal?: AbortSignal): Promise<string> {
  return (await run(cmd(s.toolPath('pgRestore'), ['--create', '--section=pre-data', '--section=post-data', '--file=-', '--', file]), { signal })).stdout;
}

function refuseCodeRunDuringLoad(schema: string): void {
  const found = codeRunDuringLoad(schema);
  if (found.length === 0) return;
  const shown = found.slice(0, 3).join('; ') + (found.length > 3 ? `; and ${found.length - 3} more` : '');
  throw new RestoreError(
    `refusing to load it: its rows would be checked by functions of the dump's own, which pg_restore would run as the superuser (${shown}); load it as the owning role yourself if you trust it`,
  );
}

function catBin(): string {
  const bin = whichSystem('cat');
  if (!bin) throw new MissingDependencyError('cat', 'coreutils', 'coreutils');
  return bin;
}

/** Reading a restored database's inventory (every table counted), as long as the dump's own may take. */
const INVENTORY_TIMEOUT_MS = 30 * 60_000;

const PSQL_SCRIPT = ['-X', '-q', '--no-password', '-v', 'ON_ERROR_STOP=1'];

const USER_SCHEMA = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'";

/** `dbname='…'` as a conninfo string: a name with `=` or spaces is never parsed as options. */
export function conninfoDbname(name: string): string {
  return `dbname='${name.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

function packing(dump: DumpFile): Compression {
  return dump.compression === 'internal' ? 'none' : dump.compression;
}

const IDENT = '(?:"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*)';

const NOT_A_ROLE = new Set(['public', 'current_user', 'session_user', 'current_role']);

/**
 * Roles a pg_restore script names as owners or grantees, the database's owner and the roles of
 * its `ALTER ROLE … IN DATABASE` settings included. Only ALTER and GRANT statements are read:
 * a comment's text that says "OWNER TO x" names nobody.
 */
export function referencedRoles(script: string): Set<string> {
  const roles = new Set<string>();
  const add = (raw: string): void => {
    const r = unquoteIdent(raw.trim());
    if (!NOT_A_ROLE.has(r.toLowerCase()) && !r.startsWith('pg_')) roles.add(r);
  };
  for (const part of splitScript(script)) {
    if (part.kind !== 'statement') continue;
    const first = leadingWords(part.text, 1)[0];
    if (first !== 'ALTER' && first !== 'GRANT') continue;
    const text = part.text;
    for (const m of text.matchAll(new RegExp(`OWNER TO (${IDENT})`, 'g'))) add(m[1]!);
    for (const m of text.matchAll(new RegExp(`FOR ROLE (${IDENT})`, 'g'))) add(m[1]!);
    const inDb = new RegExp(`^ALTER ROLE (${IDENT}) IN DATABASE `).exec(text);
    if (inDb) add(inDb[1]!);
    const grant = /(?:^GRANT | GRANT )[^]* TO ([^]+?)(?: WITH GRANT OPTION)?;$/.exec(text);
    if (grant) for (const g of grant[1]!.matchAll(new RegExp(IDENT, 'g'))) add(g[0]);
  }
  return roles;
}

/**
 * From `pg_dumpall --globals-only`: CREATE ROLE, ALTER ROLE and COMMENT ON ROLE of every needed
 * role the server lacks, and the memberships of needed roles (the roles they are members of are
 * needed too). `ALTER ROLE … IN DATABASE` is the database's own (its archive brings it back).
 */
export function roleStatements(globals: string, needed: ReadonlySet<string>, existing: ReadonlySet<string>): { statements: string[]; created: string[] } {
  const create = new Map<string, string[]>();
  const memberships: { role: string; member: string; sql: string }[] = [];
  for (const part of splitScript(globals)) {
    if (part.kind !== 'statement') continue;
    const text = part.text;
    let m = new RegExp(`^(?:CREATE|ALTER) ROLE (${IDENT})(?:;| (?!IN DATABASE ))`).exec(text) ?? new RegExp(`^COMMENT ON ROLE (${IDENT}) IS `).exec(text);
    if (m) {
      const r = unquoteIdent(m[1]!);
      create.set(r, [...(create.get(r) ?? []), text]);
      continue;
    }
    m = new RegExp(`^GRANT (${IDENT}) TO (${IDENT})`).exec(text);
    if (m) memberships.push({ role: unquoteIdent(m[1]!), member: unquoteIdent(m[2]!), sql: text.replace(new RegExp(` GRANTED BY ${IDENT};$`), ';') });
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
