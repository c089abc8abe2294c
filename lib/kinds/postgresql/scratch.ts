import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfigText, type LoadedConfig } from '../../config/load.js';
import { resolvePaths } from '../../config/paths.js';
import type { DatabaseKind, ScratchLoadOptions, ScratchServer, VerifyLoadInput, VerifyLoadResult } from '../../model/kind.js';
import { osUser } from '../../os-user.js';
import { cmd } from '../../proc/command.js';
import { pipeToFile } from '../../proc/pipeline.js';
import { whichSystem } from '../../proc/which.js';
import { parseRecordedRoles, recordedRolesOf, roleProblems, ROLES_SQL } from './accounts.js';
import { pgIdent } from './sql.js';

// PostgreSQL on servers of ours (verify's throwaway servers, the sandbox's): the load verify
// makes, the sandbox's plain pg_restore, and the row checksums that prove a load.

/** The sessions' defaults (timeouts, limits): the target's connection comes from the throwaway server. */
function defaultConfig(): LoadedConfig {
  const config = parseConfigText('', undefined);
  return { config, file: undefined, paths: resolvePaths(config) };
}

/**
 * The same path as `restore db`: the kind's RestoreSession on the throwaway server, the accounts
 * from the run's globals export, the database created as it was dumped, then the load with owners
 * as dumped. Any name loads the same (the throwaway cluster's own `postgres` database must not
 * collide with a dump of one).
 */
export async function verifyLoad(kind: DatabaseKind, input: VerifyLoadInput): Promise<VerifyLoadResult> {
  const { server, dump, signal } = input;
  const own = ownRoles(server); // before the first load adds any
  own.catch(() => undefined); // seen where it is awaited
  const target = 'asb_verify';
  const session = await kind.openTarget({ loaded: defaultConfig(), log: input.log, signal }, server.target).catch(input.unavailable);
  try {
    const created = await session.ensureAccounts(target, dump, input.accounts?.file, signal);
    await session.createDatabase(target, dump, signal);
    await session.load(target, dump, signal);
    // The roles the globals and the load left on the server, against the list recorded at dump time.
    const problems: string[] = [];
    const notes: string[] = [];
    const recorded = recordedRolesOf(input.accounts?.details);
    if (!recorded) notes.push(`roles not compared: run older than the role list in its manifest (or dumped without a superuser): ${input.accounts ? 'its globals export records none' : 'it has no globals export'}`);
    else {
      const now = parseRecordedRoles(await server.sql(ROLES_SQL));
      problems.push(...roleProblems(recorded, now, new Set(created), await own));
    }
    return { inventory: await session.inventory(target, signal), problems, notes };
  } finally {
    await session.dropDatabase(target).catch(() => undefined);
    await session.close();
  }
}

/** The roles a throwaway PostgreSQL had before anything was loaded (its bootstrap superuser). */
const ownPg = new WeakMap<ScratchServer, Promise<Set<string>>>();
function ownRoles(server: ScratchServer): Promise<Set<string>> {
  let p = ownPg.get(server);
  if (!p) {
    p = server.sql(ROLES_SQL).then((text) => new Set(parseRecordedRoles(text).map((r) => r.name)));
    ownPg.set(server, p);
  }
  return p;
}

/**
 * The plain pg_restore into a new database. Dumps are root-only (0600 in a 0700 tree); pg_restore
 * runs as postgres for peer auth, so it reads the dump from a pipe fed by `cat` running as us
 * (no copy of a many-GB file).
 */
export async function scratchLoad(server: ScratchServer, dump: { readonly path: string }, database: string, options: ScratchLoadOptions = {}): Promise<void> {
  const t = server.target;
  await server.sql(`CREATE DATABASE ${pgIdent(database)}`);
  const pw = osUser('postgres');
  if (!pw) throw new Error('no postgres user');
  const dir = mkdtempSync(join(tmpdir(), 'asb-restore-'));
  const cat = whichSystem('cat') ?? 'cat';
  const args = ['--no-owner', ...(options.noPrivileges ? ['--no-privileges'] : []), '--exit-on-error', '-h', t.host ?? '', '-p', String(t.port), '-U', t.user ?? 'postgres', '-d', database];
  try {
    await pipeToFile([cmd(cat, ['--', dump.path]), cmd(join(t.bin_dir ?? '', 'pg_restore'), args, { uid: pw.uid, gid: pw.gid, cwd: '/' })], join(dir, 'out'), { signal: options.signal });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** md5 over every row's text form in a stable order, per table in every non-system schema. */
export async function checksums(server: ScratchServer, database: string): Promise<Record<string, string>> {
  const tables = (await server.sql(`SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog','information_schema') ORDER BY 1`, database))
    .split('\n')
    .filter(Boolean);
  const out: Record<string, string> = {};
  for (const t of tables) {
    const [schema, table] = [t.slice(0, t.indexOf('.')), t.slice(t.indexOf('.') + 1)];
    const ref = `${pgIdent(schema)}.${pgIdent(table)}`;
    out[t] = (await server.sql(`SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM ${ref} x`, database)).trim();
  }
  return out;
}
