import type { MysqlConfig } from '../../config/schema.js';
import type { Logger } from '../../log.js';
import type { DatabaseSession, DumpSpec } from '../../model/kind.js';

// What the MariaDB restore side needs of a session, apart from mysql.ts (which builds the kind
// from both sides): keeps the two from importing each other.

export interface MysqlSession extends DatabaseSession {
  /** The 0600 option file every command reads (removed by close()). */
  readonly optionFile: string;
  /** The mariadb/mysql client binary. */
  readonly client: string;
  readonly secrets: readonly string[];
  readonly cfg: MysqlConfig;
  readonly log: Logger;
  /** Rows of tab-separated batch output; HEX() every free-text column. `timeoutMs`: for a query that may scan (COUNT(*)). */
  query(sql: string, signal?: AbortSignal, timeoutMs?: number): Promise<string[][]>;
  /** Users and grants via SHOW CREATE USER / SHOW GRANTS (MySQL servers; callable on MariaDB for tests). */
  planUsersWithShowGrants(signal?: AbortSignal): Promise<DumpSpec>;
}

/** Undo the mariadb/mysql client's batch-mode escaping of \0, \t, \n and \\ in values. */
export function unescapeBatch(text: string): string {
  return text.replace(/\\(.)/g, (_m, c: string) => ({ '0': '\0', t: '\t', n: '\n', r: '\r', b: '\b', '\\': '\\' })[c] ?? `\\${c}`);
}
