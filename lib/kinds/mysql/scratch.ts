import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decompressorCommand } from '../../dumps/compress.js';
import { fromHex } from '../../model/inventory.js';
import type { Compression, DatabaseKind, ScratchServer, VerifyLoadInput, VerifyLoadResult } from '../../model/kind.js';
import { cmd } from '../../proc/command.js';
import { pipeToFile } from '../../proc/pipeline.js';
import { whichSystem } from '../../proc/which.js';
import { accountProblems, recordAccounts, recordedOf } from './accounts-check.js';
import { accountKey, type AccountKey } from './accounts-parse.js';
import { unescapeBatch } from './session.js';
import { mysqlIdent, utf8Literal } from './sql.js';

// MariaDB on servers of ours (verify's throwaway servers, the sandbox's): the load verify makes,
// the sandbox's plain client load, and the row checksums that prove a load.

/**
 * The way `restore db` loads a dump (the kind's RestoreSession): the accounts it needs from the
 * run's users export first (a view's DEFINER), the database with its own character set and
 * collation, the load, then the grants; only the server differs.
 */
export async function verifyLoad(kind: DatabaseKind, input: VerifyLoadInput): Promise<VerifyLoadResult> {
  const { server, database, dump, signal } = input;
  if (!input.loaded) throw new Error('verify: the throwaway servers were opened without the config');
  const bootstrap = ownAccounts(server); // before the first load adds any
  bootstrap.catch(() => undefined); // seen where it is awaited
  const session = await kind.openTarget({ loaded: input.loaded, log: input.log, signal }, server.target).catch(input.unavailable);
  try {
    const work = await session.prepareAccounts!({ database, into: database, copyGrants: false, accounts: 'keep' }, dump, input.accounts?.file, signal);
    await work.beforeLoad();
    await session.createDatabase(database, dump, signal);
    await session.load(database, dump, signal);
    await work.afterLoad();
    // The accounts the load left on the server, against the list recorded at dump time.
    const problems: string[] = [];
    const recorded = recordedOf(input.accounts?.details);
    if (recorded) {
      const query = async (sql: string): Promise<string[][]> => (await server.sql(sql)).split('\n').filter((l) => l !== '').map((l) => l.split('\t'));
      problems.push(...accountProblems(recorded, await recordAccounts(query, unescapeBatch, signal), database, await bootstrap));
    }
    // Read as `restore db` reads what it loaded (the session's inventory), compared the same way.
    return { inventory: await session.inventory(database, signal), problems, notes: [] };
  } finally {
    await server.sql(`DROP DATABASE IF EXISTS ${mysqlIdent(database)}`).catch(() => undefined);
    await session.close();
  }
}

/** The accounts a throwaway MariaDB had before anything was loaded (root, mariadb.sys, its OS user's). */
const own = new WeakMap<ScratchServer, Promise<Set<AccountKey>>>();
function ownAccounts(server: ScratchServer): Promise<Set<AccountKey>> {
  let p = own.get(server);
  if (!p) {
    p = server.sql('SELECT HEX(User), HEX(Host) FROM mysql.user').then((text) => new Set(text.split('\n').filter(Boolean).map((l) => {
      const [u, h] = l.split('\t');
      return accountKey(fromHex(u ?? ''), fromHex(h ?? ''));
    })));
    own.set(server, p);
  }
  return p;
}

/** The plain client load: decompressor | mariadb into a new utf8mb4 database, nothing of the dump held in memory. */
export async function scratchLoad(server: ScratchServer, dump: { readonly path: string; readonly compression: Compression | 'internal' }, database: string, options: { readonly signal?: AbortSignal } = {}): Promise<void> {
  await server.sql(`CREATE DATABASE ${mysqlIdent(database)} CHARACTER SET utf8mb4`);
  const mariadb = whichSystem('mariadb') ?? whichSystem('mysql') ?? 'mariadb';
  const client = cmd(mariadb, ['--no-defaults', `--socket=${server.target.socket}`, '--user=root', '--default-character-set=utf8mb4', '--max-allowed-packet=1G', `--database=${database}`]);
  const dir = mkdtempSync(join(tmpdir(), 'asb-load-'));
  try {
    await pipeToFile([decompressorCommand(dump.compression as Compression, dump.path), client], join(dir, 'out'), { signal: options.signal });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** CHECKSUM TABLE of every base table, keyed by table name. */
export async function checksums(server: ScratchServer, database: string): Promise<Record<string, string>> {
  const tables = (await server.sql(`SELECT table_name FROM information_schema.tables WHERE table_schema = ${utf8Literal(database)} AND table_type = 'BASE TABLE' ORDER BY 1`))
    .split('\n')
    .filter(Boolean);
  const out: Record<string, string> = {};
  for (const t of tables) {
    const row = await server.sql(`CHECKSUM TABLE ${mysqlIdent(database)}.${mysqlIdent(t)} EXTENDED`);
    out[t] = row.trim().split('\t').pop() ?? '';
  }
  return out;
}
