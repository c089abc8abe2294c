import { chmodSync, chownSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cmd, type Command } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';
import { exitClasses } from '../../lib/proc/exit-status.js';
import { cli, NODE, CLI, type CliResult } from '../helpers/e2e.js';
import { daemonSet } from './bacula.js';
import { createNetwork, listensOn, type TestNetwork } from './netns.js';

/**
 * Two hosts on a private link (./netns.ts): `bkp`, the backup host, runs sshd (whose forced
 * command is `borg serve --append-only`) and `rclone serve restic --append-only` over TLS with
 * client certificates, both as an unprivileged OS user; `srv`, the ApisCP server, runs our CLI.
 * Files are shared (one machine): the test reads the backup host's repositories directly, as the
 * backup host's admin would. The databases run in the host namespace on Unix sockets, which a
 * network namespace does not hide.
 */

export const SSH_PORT = 22;
export const REST_PORT = 8000;

export interface Offsite {
  readonly base: string;
  readonly net: TestNetwork;
  /** The backup host's address on the link. */
  readonly address: string;
  /** The OS user that owns the repositories and runs borg serve / rclone. */
  readonly user: { name: string; uid: number; gid: number; home: string };
  /** Where repositories live on the backup host. */
  readonly borgDir: string;
  readonly resticDir: string;
  /** What sshd reads as this user's authorized_keys (the test installs repo-init's line there). */
  readonly authorizedKeys: string;
  /** The client's known_hosts with the backup host's key. */
  readonly knownHosts: string;
  readonly tls: { ca: string; clientPem: string; clientKeyBody: string };
  /** A command on the ApisCP server / on the backup host. */
  onServer(c: Command): Command;
  onBackupHost(c: Command): Command;
  /** The built CLI on the ApisCP server, with its own HOME (borg's cache and security dir). */
  cli(config: string, args: readonly string[], env?: Record<string, string>): Promise<CliResult>;
  readonly clientHome: string;
  stop(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function openssl(args: string[]): Promise<void> {
  await run(cmd('openssl', args));
}

/** A CA, the REST server's certificate (its IP in subjectAltName), a client certificate+key PEM. */
async function makeCerts(dir: string, address: string, owner: { uid: number; gid: number }): Promise<{ ca: string; serverCrt: string; serverKey: string; clientPem: string; clientKeyBody: string }> {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const p = (n: string): string => join(dir, n);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl(['req', '-x509', ...ec, '-keyout', p('ca.key'), '-out', p('ca.crt'), '-subj', '/CN=offsite-test-ca', '-days', '2']);
  await openssl(['req', ...ec, '-keyout', p('server.key'), '-out', p('server.csr'), '-subj', '/CN=bkp', '-addext', `subjectAltName=IP:${address}`]);
  await openssl(['x509', '-req', '-in', p('server.csr'), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial', '-days', '2', '-copy_extensions', 'copy', '-out', p('server.crt')]);
  await openssl(['req', ...ec, '-keyout', p('client.key'), '-out', p('client.csr'), '-subj', '/CN=srv']);
  await openssl(['x509', '-req', '-in', p('client.csr'), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial', '-days', '2', '-out', p('client.crt')]);
  const key = readFileSync(p('client.key'), 'utf8');
  writeFileSync(p('client.pem'), readFileSync(p('client.crt'), 'utf8') + key, { mode: 0o600 });
  chmodSync(p('client.pem'), 0o600);
  // The REST server runs as the backup user: its key is that user's, 0600.
  chownSync(p('server.key'), owner.uid, owner.gid);
  chmodSync(p('server.key'), 0o600);
  const body = key.split('\n').filter((l) => l && !l.startsWith('-----')).join('');
  return { ca: p('ca.crt'), serverCrt: p('server.crt'), serverKey: p('server.key'), clientPem: p('client.pem'), clientKeyBody: body };
}

export async function startOffsite(base: string): Promise<Offsite> {
  const net = await createNetwork({ hub: 'bkp', hosts: ['srv'], subnet: '10.213.78' });
  const daemons = daemonSet(base);
  const name = `asoff${process.pid}`.slice(0, 30);
  const stop = async (): Promise<void> => {
    await daemons.stop();
    await net.destroy();
    await run(cmd('userdel', [name]), { exitClass: exitClasses({ ok: [6] }) }).catch(() => undefined);
  };
  try {
    chmodSync(base, 0o755);
    const home = join(base, 'bkp-home');
    // '*': no password, but not locked (sshd without PAM refuses a locked account even with a key).
    await run(cmd('useradd', ['--system', '-M', '-N', '-p', '*', '-d', home, '-s', '/bin/sh', name]));
    const uid = Number((await run(cmd('id', ['-u', name]))).stdout.trim());
    const gid = Number((await run(cmd('id', ['-g', name]))).stdout.trim());
    const own = (d: string): string => (mkdirSync(d, { recursive: true, mode: 0o700 }), chownSync(d, uid, gid), d);
    own(home);
    const borgDir = own(join(base, 'bkp-borg'));
    const resticDir = own(join(base, 'bkp-restic'));
    const sshDir = join(base, 'bkp-ssh');
    mkdirSync(sshDir, { mode: 0o755 });
    const address = net.hub.address;

    // sshd: its own host key and config; only our user, only keys, the forced command decides.
    const hostKey = join(sshDir, 'host_ed25519');
    await run(cmd('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]));
    const authorizedKeys = join(sshDir, `authorized_keys_${name}`);
    writeFileSync(authorizedKeys, '', { mode: 0o644 });
    const sshdConfig = join(sshDir, 'sshd_config');
    writeFileSync(
      sshdConfig,
      [
        `Port ${SSH_PORT}`, `ListenAddress ${address}`, `HostKey ${hostKey}`, 'PidFile none', `AuthorizedKeysFile ${join(sshDir, 'authorized_keys_%u')}`,
        // The test's files live under /tmp (world-writable): StrictModes would refuse them.
        'StrictModes no', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'UsePAM no', 'PermitRootLogin no', `AllowUsers ${name}`,
        // docs/offsite.md: a dead client's `borg serve` (and its repository lock) must not outlive a cut link for long.
        'ClientAliveInterval 2', 'ClientAliveCountMax 3', 'LogLevel VERBOSE', '',
      ].join('\n'),
    );
    mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    const knownHosts = join(base, 'srv-known_hosts');
    writeFileSync(knownHosts, `${address} ${readFileSync(`${hostKey}.pub`, 'utf8').split(' ').slice(0, 2).join(' ')}\n`, { mode: 0o644 });

    const tls = await makeCerts(join(base, 'tls'), address, { uid, gid });
    const onBackupHost = (c: Command): Command => net.inside('bkp', c);
    const onServer = (c: Command): Command => net.inside('srv', c);
    const sshd = daemons.start(onBackupHost(cmd('/usr/sbin/sshd', ['-D', '-e', '-f', sshdConfig])), 'sshd');
    const rclone = daemons.start(
      onBackupHost(cmd('runuser', ['-u', name, '--', 'rclone', 'serve', 'restic', '--append-only', '--addr', `${address}:${REST_PORT}`, '--cert', tls.serverCrt, '--key', tls.serverKey, '--client-ca', tls.ca, '--config', join(home, 'rclone.conf'), resticDir], { env: { HOME: home } })),
      'rclone',
    );
    const deadline = Date.now() + 20_000;
    while (!(listensOn(sshd.pid!, SSH_PORT) && listensOn(rclone.pid!, REST_PORT))) {
      const dead = daemons.dead();
      if (dead) throw new Error(`${dead.spawnargs.join(' ')} exited on start; see ${base}/*.out`);
      if (Date.now() > deadline) throw new Error('sshd / rclone did not listen in 20 s');
      await sleep(50);
    }
    const clientHome = join(base, 'srv-home');
    mkdirSync(clientHome, { mode: 0o700 });
    return {
      base, net, address, user: { name, uid, gid, home }, borgDir, resticDir, authorizedKeys, knownHosts,
      tls: { ca: tls.ca, clientPem: tls.clientPem, clientKeyBody: tls.clientKeyBody },
      onServer, onBackupHost, clientHome,
      cli: (config, args, env = {}) => {
        const c = onServer(cmd(NODE, [CLI, '--config', config, ...args]));
        return cli(c.args, { file: c.file, env: { ...(process.env as Record<string, string>), HOME: clientHome, ...env } });
      },
      stop,
    };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}

/** `ps -eo args` every `everyMs` until stopped: what any local user could read while we run. */
export function sampleProcesses(everyMs = 40): { stop(): Promise<string[]> } {
  const seen = new Set<string>();
  let running = true;
  const loop = (async () => {
    while (running) {
      const r = await run(cmd('ps', ['-eo', 'args'])).catch(() => undefined);
      for (const l of r?.stdout.split('\n') ?? []) if (l) seen.add(l);
      await sleep(everyMs);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return [...seen];
    },
  };
}
