import { isUtf8 } from 'node:buffer';
import type { Connection } from 'mariadb';
import { BackupError } from '../../../errors.js';
import { ExitCode } from '../../../exit-codes.js';
import type { RowCharset } from './parallel.js';
import { cmd } from '../../../proc/command.js';
import { run } from '../../../proc/run.js';

/**
 * A protocol connection (the MariaDB Connector/Node.js) that runs a dump's INSERT statements,
 * for the parallel loader. The mariadb client parses every byte it sends for delimiters and
 * quotes: ~9 s of CPU for a 1.1 GB dump (bench:dumps), as much as half the server's own work
 * on 2 cores. Here Node hands each statement over as it is.
 *
 * Credentials are the client's own: what its option files resolve to (our option file, which
 * !includes /root/.my.cnf), as `my_print_defaults` prints them on a pipe (never on argv, never
 * logged). What this connection cannot do like the client (TLS options, another protocol or
 * auth plugin, no socket named) leaves the load to the client, with the reason.
 */
export interface WireTarget {
  readonly socketPath?: string;
  readonly host?: string;
  readonly port?: number;
  readonly user: string;
  readonly password?: string;
}

export type WireResolution = { readonly target: WireTarget } | { readonly unsupported: string };

/** The option groups the mariadb client reads. */
const GROUPS = ['client', 'client-server', 'client-mariadb', 'mysql', 'mariadb-client'];

/** Options this connection does not carry over from the client (they would change how it connects). */
const UNSUPPORTED = /^(ssl|tls|protocol$|default-auth$|plugin-dir$|enable-cleartext-plugin$|init-command$|compress$)/;

export async function resolveWireTarget(printDefaults: string | undefined, optionFile: string, signal?: AbortSignal): Promise<WireResolution> {
  if (!printDefaults) return { unsupported: 'my_print_defaults is not installed' };
  const out = await run(cmd(printDefaults, [`--defaults-extra-file=${optionFile}`, ...GROUPS]), { signal, timeoutMs: 10_000 });
  const opts = new Map<string, string>();
  for (const line of out.stdout.split('\n')) {
    const m = /^--([^=]+)(?:=(.*))?$/.exec(line);
    if (m) opts.set(m[1]!.replace(/_/g, '-'), m[2] ?? ''); // later lines win, as in the client
  }
  return wireTargetOf(opts);
}

/** Pure: the resolved client options → where and as whom to connect, or why not. */
export function wireTargetOf(opts: ReadonlyMap<string, string>): WireResolution {
  for (const key of opts.keys()) {
    if (key === 'ssl-verify-server-cert' && /^(0|false|off)$/i.test(opts.get(key)!)) continue;
    if (key === 'ssl' && /^(0|false|off)$/i.test(opts.get(key)!)) continue;
    if (UNSUPPORTED.test(key)) return { unsupported: `the option files set ${key}` };
  }
  const user = opts.get('user');
  if (!user) return { unsupported: 'the option files name no user' };
  const password = opts.has('password') ? opts.get('password') : undefined;
  const host = opts.get('host');
  if (host === undefined || host === 'localhost') {
    const socketPath = opts.get('socket');
    // The client would use its compiled-in socket, which only it knows.
    if (!socketPath) return { unsupported: 'the option files name no socket' };
    return { target: { socketPath, user, password } };
  }
  const port = opts.has('port') ? Number(opts.get('port')) : 3306;
  if (!Number.isInteger(port) || port <= 0) return { unsupported: `port ${opts.get('port')} is not a number` };
  return { target: { host, port, user, password } };
}

const INSERT = Buffer.from('INSERT INTO ');

/** A statement the server refused, or a connection that broke, with where and what. */
export class StatementError extends BackupError {
  constructor(
    message: string,
    readonly where: string,
    readonly errno: number | undefined,
    readonly sqlState: string | undefined,
  ) {
    super(message, ExitCode.DUMP_FAILED, { where, errno, sqlState });
  }
}

const ER_LOCK_DEADLOCK = 1213;
const DEADLOCK_ATTEMPTS = 5;

/**
 * One loading connection: statements pipelined, at most `depth` waiting for their result.
 *
 * The connector encodes the JS strings it is given in the connection's character set, so each
 * statement's bytes become a string that encodes back to the same bytes: latin1 for a binary
 * connection (any bytes), UTF-8 for a utf8mb4/utf8mb3 one (valid UTF-8 only, see takes()). It
 * also switches that encoding when the server reports a new character_set_client, so nothing
 * here runs SET NAMES, and open() checks what the server says.
 *
 * Two connections loading rows of one table can deadlock (1213): InnoDB then rolls back one
 * statement, and under autocommit that statement is all it rolled back, so it is sent again
 * (a few times at most). A session that is not in autocommit never retries: there the deadlock
 * undid more than the one statement.
 */
export class WireSink {
  private readonly inflight = new Set<Promise<unknown>>();
  private failure: StatementError | undefined;
  private readonly encoding: 'latin1' | 'utf8';
  private autocommit = false;

  private constructor(
    private readonly conn: Connection,
    private readonly doing: string,
    readonly where: string,
    private readonly depth: number,
    readonly charset: RowCharset,
  ) {
    this.encoding = charset === 'binary' ? 'latin1' : 'utf8';
    // A connection closed under it (killed by the load's watchdog, a server gone) while idle is
    // an event, not a query's failure: kept for the next send instead of an uncaught error.
    conn.on('error', (err: unknown) => {
      this.failure ??= wireError(err, doing, where);
    });
  }

  static async open(target: WireTarget, database: string, doing: string, maxAllowedPacket: number, charset: RowCharset = 'utf8mb4', depth = 2): Promise<WireSink> {
    const where = target.socketPath ?? `${target.host}:${target.port}`;
    let conn: Connection;
    try {
      // Loaded here, not at startup: it added ~10 MB to the RSS of every run (28 -> 19 MB for
      // loading the mysql kind), and a dump forks our process for every tool it starts.
      const { createConnection } = await import('mariadb');
      conn = await createConnection({
        ...(target.socketPath ? { socketPath: target.socketPath } : { host: target.host, port: target.port }),
        user: target.user,
        password: target.password,
        database,
        charset,
        maxAllowedPacket,
        multipleStatements: false,
        permitLocalInfile: false,
        connectTimeout: 10_000,
      });
    } catch (err) {
      throw wireError(err, `${doing}: cannot connect to ${where} as ${target.user}`, where);
    }
    const rows: unknown = await conn.query('SELECT @@character_set_client AS cs, @@autocommit AS ac').catch((err: unknown) => {
      conn.destroy();
      throw wireError(err, doing, where);
    });
    const got = (rows as { cs?: string }[])[0]?.cs;
    const want = charset === 'utf8mb3' ? /^utf8(mb3)?$/ : new RegExp(`^${charset}$`);
    if (!got || !want.test(got)) {
      conn.destroy();
      throw new StatementError(`${doing}: the connection to ${where} has character set ${got ?? 'unknown'}, not ${charset}`, where, undefined, undefined);
    }
    const sink = new WireSink(conn, doing, where, depth, charset);
    sink.autocommit = Number((rows as { ac?: unknown }[])[0]?.ac) === 1;
    return sink;
  }

  /**
   * Statements it can send byte for byte: on a binary connection any INSERT (nothing that could
   * change its character set), on a UTF-8 one valid UTF-8 only.
   */
  takes(statement: Buffer): boolean {
    if (this.charset === 'binary') return statement.subarray(0, INSERT.length).equals(INSERT);
    return isUtf8(statement);
  }

  /** Sends one statement; resolves when there is room for the next. Throws the first failure. */
  async send(statement: Buffer): Promise<void> {
    if (this.failure) throw this.failure;
    let end = statement.length;
    while (end > 0 && (statement[end - 1] === 10 || statement[end - 1] === 13)) end--;
    const sql = statement.toString(this.encoding, 0, end);
    if (/\bautocommit\b/i.test(sql.slice(0, 200))) this.autocommit = false;
    const p: Promise<unknown> = this.query(sql, 1).then(
      () => this.inflight.delete(p),
      (err: unknown) => {
        this.inflight.delete(p);
        this.failure ??= wireError(err, this.doing, this.where);
      },
    );
    this.inflight.add(p);
    while (this.inflight.size >= this.depth && !this.failure) await Promise.race(this.inflight);
    if (this.failure) throw this.failure;
  }

  private query(sql: string, attempt: number): Promise<unknown> {
    return this.conn.query(sql).catch((err: unknown) => {
      if ((err as { errno?: number }).errno !== ER_LOCK_DEADLOCK || !this.autocommit || attempt >= DEADLOCK_ATTEMPTS) throw err;
      return this.query(sql, attempt + 1);
    });
  }

  connectionId(): number | undefined {
    return this.conn.threadId ?? undefined;
  }

  /** Resolves once the server has executed everything sent so far. */
  async drain(): Promise<void> {
    await Promise.all(this.inflight);
    if (this.failure) throw this.failure;
  }

  async close(): Promise<void> {
    await this.drain();
    await this.conn.end();
  }

  destroy(): void {
    this.conn.destroy();
  }
}

function wireError(err: unknown, doing: string, where: string): StatementError {
  const e = err as { sqlMessage?: string; text?: string; errno?: number; sqlState?: string; message?: string };
  const text = e.sqlMessage ?? e.text ?? e.message ?? String(err);
  const code = e.errno !== undefined ? `ERROR ${e.errno}${e.sqlState ? ` (${e.sqlState})` : ''}: ` : '';
  return new StatementError(`${doing}: ${code}${text}`, where, e.errno, e.sqlState);
}
