import { BackupError } from '../../errors.js';
import { ExitCode } from '../../exit-codes.js';
import type { Command } from '../../proc/command.js';
import { run } from '../../proc/run.js';
import { openClientSession, type ClientSession } from '../../proc/session.js';

/**
 * A `mariadb --batch` client kept open from one query to the next (proc/session.ts): a client
 * per query is a fork of our ~100 MB process, the client's start and a login. Opened on the first
 * query. In batch mode the client stops at the first failing statement: a failed query (or one
 * past its time limit) ends it, and the next query opens a new one. A query past its limit is
 * also killed on the server (KILL QUERY from another login): a client that went away is noticed
 * only when the server next writes to it, and an inventory over a huge information_schema would
 * keep running, and holding what it holds, until then.
 */
export class KeptClient {
  private client: ClientSession | undefined;
  /** The server's id of the kept client's connection, asked for when it opens. */
  private connection: string | undefined;

  /** `command`: the batch client (--batch --skip-column-names); `what` names its queries in a timeout. */
  constructor(
    private readonly command: Command,
    private readonly secrets: readonly string[],
    private readonly what: string,
  ) {}

  /** Tab-separated rows of what `sql` (statements ending in ';') printed. */
  async rows(sql: string, limitMs: number, signal?: AbortSignal): Promise<string[][]> {
    // --unbuffered: each result is flushed as it comes, or the marker waits in the client's buffer.
    const fresh = this.client === undefined;
    const client = (this.client ??= openClientSession({ ...this.command, args: [...this.command.args, '--unbuffered'] }, (token) => `SELECT '${token}';`, { secrets: this.secrets }));
    const limit = AbortSignal.timeout(limitMs);
    const stop = signal ? AbortSignal.any([signal, limit]) : limit;
    let connection: string | undefined;
    try {
      if (fresh) this.connection = rowsOf(await client.request('SELECT CONNECTION_ID();', stop))[0]?.[0];
      connection = this.connection;
      return rowsOf(await client.request(sql, stop));
    } catch (err) {
      if (this.client === client) this.client = undefined;
      await client.close().catch(() => undefined);
      if (limit.aborted) {
        if (connection !== undefined) await this.killQuery(connection);
        throw new BackupError(`${this.what} took longer than ${formatLimit(limitMs)}`, ExitCode.DUMP_FAILED);
      }
      throw err;
    }
  }

  /** Best effort: the query may have ended meanwhile (then there is nothing to kill), or the server be gone. */
  private async killQuery(connection: string): Promise<void> {
    if (!/^\d+$/.test(connection)) return;
    await run({ ...this.command, args: [...this.command.args, '-e', `KILL QUERY ${connection}`] }, { secrets: this.secrets, timeoutMs: 10_000 }).catch(() => undefined);
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    await client?.close().catch(() => undefined);
  }
}

/** Tab-separated rows of `mariadb --batch --skip-column-names` output. */
export function rowsOf(stdout: string): string[][] {
  return stdout.split('\n').filter((l) => l !== '').map((l) => l.split('\t'));
}

function formatLimit(ms: number): string {
  return ms >= 60_000 ? `${ms / 60_000} minutes` : `${ms / 1000} s`;
}
