import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../atomic-file.js';
import type { LoadedConfig } from '../config/load.js';
import { mysqlKind, type MysqlSession } from '../kinds/mysql/index.js';
import type { Logger } from '../log.js';
import { quote } from '../proc/command.js';

/**
 * install's point-in-time step (docs/point-in-time.md): with MariaDB's binary log on, a systemd
 * unit for `binlog follow`; with it off, how to turn it on. Turning it on needs a server restart:
 * the admin's call, never ours; so is enabling the unit.
 */
export const UNIT_NAME = 'apiscp-backup-binlog.service';
const MARK = '# written by apiscp-backup install';

export function renderUnit(p: { readonly node: string; readonly cli: string; readonly config: string; readonly dumpsDir: string }): string {
  return [
    MARK,
    '[Unit]',
    'Description=apiscp-backup: copy MariaDB binary logs for point-in-time restores',
    'After=mariadb.service mysql.service network-online.target',
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${quote(p.node)} ${quote(p.cli)} --config ${quote(p.config)} binlog follow`,
    // It reconnects by itself after a server restart; a crash of ours is systemd's to restart.
    'Restart=always',
    'RestartSec=10',
    // SIGTERM ends it cleanly (exit 143 is our "interrupted").
    'SuccessExitStatus=143',
    'Nice=10',
    'IOSchedulingClass=idle',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}

/** The drop-in that turns binary logging on (docs/point-in-time.md explains each line). */
export const BINLOG_DROP_IN = [
  '[mariadb]',
  'log_bin = mariadb-bin',
  'binlog_format = ROW',
  'server_id = 1',
  '# longer than binlog follow could ever lag (a week down unnoticed)',
  'expire_logs_days = 10',
].join('\n');

export interface BinlogStep {
  readonly actions: string[];
  readonly notes: string[];
  readonly changed: boolean;
}

export async function binlogStep(loaded: LoadedConfig, root: string, p: { node: string; cli: string; config: string; dry: boolean; log: Logger }): Promise<BinlogStep> {
  const actions: string[] = [];
  const notes: string[] = [];
  if (loaded.config.databases.mysql.enabled === false) return { actions, notes, changed: false };
  let on: boolean;
  try {
    const session = (await mysqlKind.open({ loaded, log: p.log })) as MysqlSession | undefined;
    if (!session) return { actions, notes, changed: false };
    try {
      on = (await session.query('SELECT @@GLOBAL.log_bin'))[0]?.[0] === '1';
    } finally {
      await session.close();
    }
  } catch (err) {
    actions.push(`point-in-time: could not ask MariaDB whether binary logs are on (${err instanceof Error ? err.message : String(err)}); docs/point-in-time.md`);
    return { actions, notes, changed: false };
  }
  if (!on) {
    notes.push(`MariaDB's binary log is off, so databases can be restored only to a dump, not to a moment (restore db --at). To turn it on, put this in /etc/my.cnf.d/apiscp-backup-binlog.cnf (RHEL) or /etc/mysql/mariadb.conf.d/90-apiscp-backup-binlog.cnf (Debian), restart MariaDB when it suits the sites (your call: we never restart it), then run install again:\n${BINLOG_DROP_IN}`);
    return { actions, notes, changed: false };
  }
  const file = join(root, 'etc/systemd/system', UNIT_NAME);
  const text = renderUnit({ node: p.node, cli: p.cli, config: p.config, dumpsDir: loaded.paths.dumpsDir });
  let existing: string | undefined;
  try {
    existing = readFileSync(file, 'utf8');
  } catch {
    existing = undefined;
  }
  if (existing === text) {
    actions.push(`systemd unit ${file}: already installed`);
    return { actions, notes, changed: false };
  }
  if (existing !== undefined && !existing.startsWith(MARK)) {
    notes.push(`${file} exists and was not written by apiscp-backup: left alone`);
    return { actions, notes, changed: false };
  }
  if (!p.dry) writeFileAtomic(file, text, { mode: 0o644, dirMode: 0o755 });
  actions.push(`${p.dry ? 'would ' : ''}${existing === undefined ? 'install' : 'update'} systemd unit ${file} (binlog follow); start it with: systemctl daemon-reload && systemctl enable --now ${UNIT_NAME}`);
  return { actions, notes, changed: true };
}
