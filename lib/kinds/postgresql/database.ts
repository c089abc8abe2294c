import { readFile, rm, writeFile } from 'node:fs/promises';
import { makeTempDir } from '../../private-dir.js';
import { join } from 'node:path';
import { cmd, type Command } from '../../proc/command.js';
import { pipeToFile } from '../../proc/pipeline.js';
import { run } from '../../proc/run.js';
import { decompressorCommand } from '../../dumps/compress.js';
import type { Compression, DumpFile } from '../../model/kind.js';
import { asciiIdent } from './sql.js';
import { identAt, leadingWords, renameAfterDatabase, splitScript } from './script.js';

/**
 * The database itself, as a pg_dump --create archive holds it: the DATABASE entry (encoding,
 * locale provider, collation, ctype, ICU locale, owner) and, for after the load, its comment,
 * privileges, CONNECTION LIMIT, `ALTER DATABASE … SET` and `ALTER ROLE … IN DATABASE … SET`.
 * pg_restore prints them (only with -C) naming the dumped database; we rename them to the
 * database we restore into, token by token, and run them on the maintenance database.
 * Archives made without --create have none of these entries: the database is then created with
 * the server's defaults, as before.
 */
export interface DatabaseScripts {
  /** CREATE DATABASE … and ALTER DATABASE … OWNER TO, or undefined for an archive without them. */
  readonly create?: string;
  /** Comment, privileges, limits and settings: applied once the content is loaded. */
  readonly after?: string;
}

/** TOC entries that belong to the database rather than to its content (pg_restore -l lines). */
const DATABASE_ENTRY = /^\d+; \d+ \d+ (DATABASE PROPERTIES|DATABASE|COMMENT|ACL|SECURITY LABEL) - (.*)$/;

/**
 * pg_restore needs a file it can seek in to read single entries without the data before them;
 * a dump compressed on top of -Fc (none of ours, but accepted) is unpacked into `scratch`.
 */
export async function archiveFile(dump: DumpFile, scratch: string, signal?: AbortSignal): Promise<string> {
  const packed: Compression = dump.compression === 'internal' ? 'none' : dump.compression;
  if (packed === 'none') return dump.path;
  const file = join(scratch, 'archive.dump');
  await pipeToFile([decompressorCommand(packed, dump.path)], file, { signal, fsync: false });
  return file;
}

/**
 * The database's own scripts from the archive `file`. pg_restore runs as us without a server:
 * it only prints, and the dump stays root's 0600 file.
 */
export async function databaseScripts(pgRestore: string, file: string, into: string, signal?: AbortSignal): Promise<DatabaseScripts> {
  const list = (await run(cmd(pgRestore, ['--create', '--list', '--', file]), { signal })).stdout;
  const creates: string[] = [];
  const afters: string[] = [];
  for (const line of list.split('\n')) {
    const m = DATABASE_ENTRY.exec(line);
    if (!m) continue;
    if (m[1] === 'DATABASE') creates.push(line);
    else if (m[1] === 'DATABASE PROPERTIES' || m[2]!.startsWith('DATABASE ')) afters.push(line);
  }
  if (creates.length === 0) return {};
  const scratch = await makeTempDir('asb-pgdb-');
  try {
    // One pass: pg_restore -C prints the database's properties with its DATABASE entry anyway.
    const listFile = join(scratch, 'database.list');
    await writeFile(listFile, [...creates, ...afters].join('\n') + '\n', { mode: 0o600 });
    const out = join(scratch, 'database.sql');
    await run(cmd(pgRestore, ['--create', `--use-list=${listFile}`, `--file=${out}`, '--', file]), { signal });
    // Bytes as they are (the database's own encoding, which the script's client_encoding names).
    const script = (await readFile(out)).toString('latin1');
    const from = createdName(script);
    if (!from) throw new Error(`pg_restore printed no CREATE DATABASE for the archive's DATABASE entry`);
    return split(script, from, asciiIdent(into));
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** The name token of the script's CREATE DATABASE statement, as pg_dump spelled it. */
function createdName(script: string): string | undefined {
  for (const part of splitScript(script)) {
    if (part.kind === 'statement' && /^CREATE\s+DATABASE\s+/i.test(part.text)) return identAt(part.text.replace(/^CREATE\s+DATABASE\s+/i, ''));
  }
  return undefined;
}

const SESSION = (w: string[]): boolean => w[0] === 'SET' || w[0] === 'RESET' || (w[0] === 'SELECT' && w[1] === 'PG_CATALOG');
const CREATE = (w: string[]): boolean => (w[0] === 'CREATE' && w[1] === 'DATABASE') || (w[0] === 'ALTER' && w[1] === 'DATABASE' && w[3] === 'OWNER');
const AFTER = (w: string[]): boolean =>
  (w[0] === 'ALTER' && (w[1] === 'DATABASE' || w[1] === 'ROLE')) || ((w[0] === 'COMMENT' || w[0] === 'SECURITY') && w.includes('DATABASE')) || w[0] === 'GRANT' || w[0] === 'REVOKE';

/**
 * Renamed statements in two scripts: creating the database (and its owner), and the rest for
 * after the load. Session settings and psql's \restrict guard lines go into both; \connect and
 * \encoding (for the dumped database) are dropped. Anything else fails: we run only what we know.
 */
function split(script: string, from: string, to: string): DatabaseScripts {
  const create: string[] = [];
  const after: string[] = [];
  let afterStatements = 0;
  for (const part of splitScript(script)) {
    if (part.kind === 'meta') {
      if (/^\\(un)?restrict\s/.test(part.text)) {
        create.push(part.text);
        after.push(part.text);
      }
      continue;
    }
    const words = leadingWords(part.text, 6);
    const text = renameAfterDatabase(part.text, from, to);
    if (SESSION(words)) {
      create.push(text);
      after.push(text);
    } else if (CREATE(words)) create.push(text);
    else if (AFTER(words)) {
      after.push(text);
      afterStatements++;
    } else throw new Error(`unexpected statement in the archive's database entries: ${part.text.slice(0, 80)}`);
  }
  return { create: create.join('\n') + '\n', ...(afterStatements ? { after: after.join('\n') + '\n' } : {}) };
}

/**
 * Run a database script with `psql` (as the session's tools run) on the maintenance database:
 * the script's bytes go through a file and `cat`, so an encoding other than UTF-8 stays intact.
 */
export async function runScript(psql: Command, catBin: string, script: string, signal?: AbortSignal): Promise<void> {
  const scratch = await makeTempDir('asb-pgdbrun-');
  try {
    const file = join(scratch, 'script.sql');
    await writeFile(file, Buffer.from(script, 'latin1'), { mode: 0o600 });
    await pipeToFile([cmd(catBin, ['--', file]), psql], join(scratch, 'out'), { signal, fsync: false });
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
