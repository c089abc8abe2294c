import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import type { LoadedConfig } from '../config/load.js';
import { ConfigError, UsageError } from '../errors.js';
import { cmd } from '../proc/command.js';
import { run } from '../proc/run.js';
import { resolveTool } from '../proc/which.js';
import { keepArgs } from './types.js';
import { parseSshRemote, type SshRemote } from './remote.js';

/**
 * What `repo-init --remote` and `prune --print` tell the admin to set up on the backup host. The
 * backup host is the part a root attacker on the ApisCP server cannot reach: everything that can
 * delete history (pruning, compacting, the non-append-only access) stays there.
 */

/** Where `repo-init --remote` creates this server's SSH key when borg.ssh_key is not set. */
export function defaultSshKey(loaded: LoadedConfig): string {
  return join(loaded.paths.root, 'etc/apiscp-backup/ssh/borg_ed25519');
}

/** The client key (ed25519, no passphrase: cron must use it), created 0600 root if missing; its public line. */
export async function ensureSshKey(file: string): Promise<string> {
  if (!existsSync(file)) {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    // The key has no passphrase (nothing secret on argv: -N '' is the empty one).
    await run(cmd(resolveTool('ssh-keygen', 'openssh-client', 'openssh-clients'), ['-q', '-t', 'ed25519', '-N', '', '-C', `apiscp-backup@${hostname()}`, '-f', file]));
  }
  chmodSync(file, 0o600);
  const pub = `${file}.pub`;
  if (!existsSync(pub)) {
    const r = await run(cmd(resolveTool('ssh-keygen', 'openssh-client', 'openssh-clients'), ['-y', '-f', file]));
    return r.stdout.trim();
  }
  return readFileSync(pub, 'utf8').trim();
}

/**
 * The backup host's authorized_keys line: this key may run only `borg serve` in append-only mode
 * on its own repository path (`restrict`: no pty, no forwarding, no agent, no ~/.ssh/rc).
 */
export function authorizedKeysLine(remote: SshRemote, publicKey: string): string {
  if (/["\\\s]/.test(remote.path)) throw new UsageError(`repository path ${JSON.stringify(remote.path)}: no spaces, quotes or backslashes (it goes into a forced command)`);
  return `command="borg serve --append-only --restrict-to-path ${remote.path}",restrict ${publicKey}`;
}

export function borgRemoteSetup(loaded: LoadedConfig, url: string, key: string, publicKey: string): string {
  const remote = parseSshRemote(url);
  if (!remote) throw new UsageError(`--remote ${url}: expected ssh://user@host[:port]/absolute/path`);
  const line = authorizedKeysLine(remote, publicKey);
  return [
    `# 1. On the backup host ${remote.host}, as root (docs/offsite.md):`,
    `useradd --system --create-home --shell /bin/sh ${remote.user}   # once; borg serve runs as this user`,
    `install -d -o ${remote.user} -m 0700 ${dirname(remote.path)}`,
    `# append this line to ~${remote.user}/.ssh/authorized_keys (0600, owned by ${remote.user}):`,
    line,
    `# retention runs there too: \`apiscp-backup prune --print\` on this server prints its cron line.`,
    '',
    `# 2. On this server: ${loaded.file ?? '/etc/apiscp-backup/config.yaml'}`,
    'borg:',
    `  repository: ${url}`,
    `  ssh_key: ${key}`,
    '  append_only: true',
    `  # passphrase_file: /etc/apiscp-backup/borg.pass   (0600 root; keep a copy OFF this server)`,
    `#   then check the backup host's key fingerprint and trust it:`,
    `#   ssh-keyscan ${remote.port ? `-p ${remote.port} ` : ''}${remote.host} >> /root/.ssh/known_hosts   (or borg.ssh_known_hosts)`,
    '#   and create the repository: apiscp-backup repo-init',
    '',
  ].join('\n');
}

export function resticRemoteSetup(loaded: LoadedConfig, url: string): string {
  const m = /^rest:(https?):\/\/([^/]+)(\/.*)?$/.exec(url);
  if (!m) throw new UsageError(`--remote ${url}: expected rest:https://host:port/path/`);
  if (/@/.test(m[2]!)) throw new UsageError('--remote: no credentials in the URL (they would be on every restic command line); use a TLS client certificate');
  const port = /:(\d+)$/.exec(m[2]!)?.[1] ?? (m[1] === 'https' ? '443' : '80');
  return [
    `# 1. On the backup host, as root: the REST server refuses deletes and overwrites (docs/offsite.md).`,
    '# /etc/systemd/system/restic-rest.service',
    '[Unit]',
    'Description=restic REST server, append-only (rclone serve restic)',
    'After=network-online.target',
    '[Service]',
    'User=restic',
    `ExecStart=/usr/bin/rclone serve restic --append-only --addr :${port} --cert /etc/restic-rest/server.crt --key /etc/restic-rest/server.key --client-ca /etc/restic-rest/clients-ca.crt /srv/restic`,
    'Restart=on-failure',
    '[Install]',
    'WantedBy=multi-user.target',
    `# retention runs there too: \`apiscp-backup prune --print\` on this server prints its cron line.`,
    '',
    `# 2. On this server: ${loaded.file ?? '/etc/apiscp-backup/config.yaml'}`,
    'restic:',
    `  repository: ${url}`,
    '  password_file: /etc/apiscp-backup/restic.pass   # 0600 root; keep a copy OFF this server',
    '  cacert: /etc/apiscp-backup/restic-rest-ca.crt     # the CA of the server\'s certificate',
    '  tls_client_cert: /etc/apiscp-backup/restic-client.pem   # this server\'s certificate + key, 0600 root',
    '  append_only: true',
    '#   then: apiscp-backup repo-init',
    '',
  ].join('\n');
}

/**
 * The backup host's retention, with this server's keep-* settings, for its crontab. Only this
 * server's archives (borg: its `{hostname}-` prefix; restic: --host). It needs the repository's
 * passphrase there: a backup host that holds it can read the backups (docs/threat-model.md).
 */
export function backupHostPrune(loaded: LoadedConfig, engine: 'borg' | 'restic', repositoryPath: string | undefined, client = hostname()): string {
  if (engine === 'borg') {
    const repo = loaded.config.borg.repository ?? '';
    const path = repositoryPath ?? parseSshRemote(repo)?.path;
    if (!path) throw new ConfigError('borg.repository is not an ssh:// URL: give the path on the backup host with --repository', loaded.file, 'borg.repository');
    const keep = keepArgs(loaded.config.borg.keep).join(' ');
    return [
      `# On the backup host, as the repository's owner (daily, after the servers' backups):`,
      `BORG_REPO=${path} BORG_PASSCOMMAND='cat /etc/borg/${client}.pass' borg prune --glob-archives '${client}-*' ${keep} && \\`,
      `BORG_REPO=${path} BORG_PASSCOMMAND='cat /etc/borg/${client}.pass' borg compact`,
      '# Before pruning, compare `borg list` with what you expect: a hacked client\'s deletes are only marked',
      '# in an append-only repository until this runs (roll back first: docs/offsite.md).',
      '',
    ].join('\n');
  }
  const path = repositoryPath ?? `/srv/restic${/^rest:https?:\/\/[^/]+(\/.*?)\/?$/.exec(loaded.config.restic.repository ?? '')?.[1] ?? ''}`;
  const keep = keepArgs(loaded.config.restic.keep).join(' ');
  return [
    `# On the backup host, as the REST server's user (daily, after the servers' backups):`,
    `RESTIC_REPOSITORY=${path} RESTIC_PASSWORD_FILE=/etc/restic/${client}.pass restic forget --prune --tag apiscp-backup --host ${client} --group-by host,tags ${keep}`,
    '',
  ].join('\n');
}
