import type { LoadedConfig } from '../config/load.js';
import { quote } from '../proc/command.js';

/**
 * Remote repositories (docs/offsite.md): borg over SSH to `borg serve --append-only`, restic over
 * REST to `rclone serve restic --append-only`. What the client needs to reach them lives here;
 * what the backup host runs is printed by `repo-init --remote` and `prune --print`.
 */

/** `ssh://user@host[:port]/path` (borg's form; `user@host:path` is the scp form borg also takes). */
export interface SshRemote {
  readonly user: string;
  readonly host: string;
  readonly port?: number;
  /** Absolute path on the backup host. */
  readonly path: string;
}

export function parseSshRemote(url: string): SshRemote | undefined {
  const m = /^ssh:\/\/([A-Za-z0-9._-]+)@(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d+))?(\/.*)$/.exec(url);
  if (!m) return undefined;
  // borg's `ssh://host/./repo` means relative to the home directory: keep it as given.
  return { user: m[1]!, host: m[2]!, port: m[3] ? Number(m[3]) : undefined, path: m[4]!.startsWith('/./') ? m[4]!.slice(3) : m[4]! };
}

export function isRemoteRepository(repository: string | undefined): boolean {
  return !!repository && /^(ssh:\/\/|rest:|sftp:|s3:|b2:|rclone:|[^/][^:]*:)/.test(repository) && !repository.startsWith('/');
}

/** The repository as error messages and status name it: credentials in a URL never shown. */
export function remoteLabel(repository: string): string {
  return repository.replace(/(\/\/)([^/@:]+):[^/@]+@/, '$1$2:***@');
}

/**
 * BORG_RSH for an ssh:// repository: this server's own key only (an agent or another key in
 * root's ~/.ssh must not decide who we are), never a prompt (cron has no terminal: an unknown
 * host key fails), and keep-alives so a cut link fails the run after `ssh_timeout` seconds
 * instead of hanging on a dead TCP connection until the kernel gives up.
 */
export function borgRsh(loaded: LoadedConfig): string | undefined {
  const b = loaded.config.borg;
  if (!b.repository?.startsWith('ssh://') && !b.ssh_key && !b.ssh_known_hosts) return undefined;
  const alive = Math.max(1, Math.ceil(b.ssh_timeout / 3));
  const args = ['ssh', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', `ConnectTimeout=${b.ssh_timeout}`, '-o', `ServerAliveInterval=${alive}`, '-o', 'ServerAliveCountMax=3'];
  if (b.ssh_key) args.push('-o', 'IdentitiesOnly=yes', '-i', b.ssh_key);
  if (b.ssh_known_hosts) args.push('-o', `UserKnownHostsFile=${b.ssh_known_hosts}`);
  // borg splits BORG_RSH with shlex: quoted paths survive spaces.
  return args.map(quote).join(' ');
}

/** restic's global TLS options for rest:https:// (paths only: the key stays in its file). */
export function resticTlsArgs(loaded: LoadedConfig): string[] {
  const r = loaded.config.restic;
  return [...(r.cacert ? ['--cacert', r.cacert] : []), ...(r.tls_client_cert ? ['--tls-client-cert', r.tls_client_cert] : [])];
}

/** A failure that is the link's, not the repository's: the admin looks at the network and the backup host. */
export function linkFailure(stderr: string): boolean {
  return /Connection (closed|reset|timed out|refused)|connect to host|Broken pipe|Timeout, server .* not responding|No route to host|Network is unreachable|i\/o timeout|connection reset|dial tcp|Remote: .*(closed|EOF)|Connection to .* closed by remote host|ConnectionClosed|unexpected EOF/i.test(stderr);
}

/** What the failure says about the remote, appended to an engine's exit explanation. */
export function remoteContext(repository: string | undefined, stderr: string): string {
  if (!repository || !isRemoteRepository(repository)) return '';
  return linkFailure(stderr) ? `; the link to the backup host ${remoteLabel(repository)} broke or it did not answer` : `; repository ${remoteLabel(repository)}`;
}

/**
 * Where retention runs for an append-only repository (borg serve --append-only, rclone serve
 * restic --append-only): on the backup host, never from here. `list` and `status` say so, so an
 * admin who sees backups pile up knows where to look.
 */
export function hostSideRetention(loaded: LoadedConfig): string | undefined {
  const engine = loaded.config.engine;
  if (engine !== 'borg' && engine !== 'restic') return undefined;
  const section = loaded.config[engine];
  if (!section.append_only) return undefined;
  const where = section.repository ? remoteLabel(section.repository) : 'the repository';
  return `retention: ${engine}.append_only: this server never prunes ${where}; the backup host does (\`apiscp-backup prune --print\` gives its daily line)`;
}
