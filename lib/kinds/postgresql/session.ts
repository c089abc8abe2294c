import type { Command } from '../../proc/command.js';
import type { DatabaseSession } from '../../model/kind.js';

// What the PostgreSQL restore side needs of a session, apart from postgresql.ts (which builds the
// kind from both sides): keeps the two from importing each other.

export type PgTool = 'psql' | 'pgDump' | 'pgDumpall' | 'pgRestore';

export interface PgSession extends DatabaseSession {
  readonly kind: 'postgresql';
  readonly maintenanceDb: string;
  /** Where the server is (socket directory or host:port), for messages. */
  readonly where: string;
  /** psql -At output of `sql` in `database` (ON_ERROR_STOP). */
  sql(database: string, sql: string, signal?: AbortSignal): Promise<string>;
  /** The absolute path of one of the server major version's own tools (for work without a server). */
  toolPath(tool: PgTool): string;
  /** One of the server major version's own tools, connected through the environment. */
  tool(tool: PgTool, args: string[], database?: string): Command;
}
