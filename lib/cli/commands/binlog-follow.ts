import { follow } from '../../binlog/follower.js';
import { mysqlKind, type MysqlSession } from '../../kinds/mysql/index.js';
import { UsageError } from '../../errors.js';
import type { CommandContext } from '../context.js';

/**
 * `binlog follow`: runs until stopped (systemd unit apiscp-backup-binlog.service), copying the
 * MariaDB server's binlogs into <dumps.dir>/binlog/ (lib/binlog/follower.ts). It connects as the
 * configured databases.mysql account, which needs REPLICATION SLAVE and BINLOG MONITOR (root has
 * them; docs/point-in-time.md says how to make a dedicated account).
 */
export default async function binlogFollow(ctx: CommandContext, opts: Record<string, unknown>): Promise<number> {
  const session = (await mysqlKind.open({ loaded: ctx.loaded, log: ctx.log, signal: ctx.signal })) as MysqlSession | undefined;
  if (!session) throw new UsageError('binlog follow: databases.mysql is disabled in the configuration');
  try {
    const on = (await session.query('SELECT @@GLOBAL.log_bin'))[0]?.[0] === '1';
    if (!on) throw new UsageError('binlog follow: the server has binary logging off (log_bin): see docs/point-in-time.md, "Turning binlogs on"');
    await follow({
      dumpsDir: ctx.loaded.paths.dumpsDir,
      optionFile: session.optionFile,
      secrets: session.secrets,
      query: (sql) => session.query(sql),
      log: ctx.log,
      signal: ctx.signal,
      ...(opts.tick !== undefined ? { tickMs: Number(opts.tick) * 1000 } : {}),
      ...(opts.serverId !== undefined ? { serverId: Number(opts.serverId) } : {}),
    });
    return 0;
  } finally {
    await session.close();
  }
}
