import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../atomic-file.js';
import { ensureCa, ensureDaemonCert, ensurePkiKeypair, fileDaemonTls } from '../../engine/bacula-tls.js';
import { UsageError } from '../../errors.js';
import type { CommandContext } from '../context.js';

/**
 * `bacula tls init` on the director host: a CA and one certificate per daemon (`--daemon
 * NAME[@ADDRESS]`, NAME = the daemon's Bacula name, which TLS Allowed CN checks), and PKI
 * keypairs for data encryption (`--pki NAME`: one per client, and `master`, whose private half
 * goes into the safe, never onto a client). Existing files are kept: re-running adds daemons.
 */
export default async function baculaTlsInit(ctx: CommandContext, opts: Record<string, unknown>): Promise<number> {
  const dir = opts.dir as string | undefined;
  if (!dir) throw new UsageError('bacula tls init: --dir DIR (where the CA, certificates and keys go; 0700)');
  const daemons = (opts.daemon as string[] | undefined) ?? [];
  const pki = (opts.pki as string[] | undefined) ?? [];
  if (!daemons.length && !pki.length) throw new UsageError('bacula tls init: name the daemons (--daemon NAME[@ADDRESS]) and/or PKI keypairs (--pki NAME)');
  const lines: string[] = [];
  const ca = await ensureCa(join(dir, 'tls'));
  lines.push(`${ca.created ? 'created' : 'kept'} CA ${ca.cert} (key ${ca.key}, 0600: keep it on the director host)`);
  for (const spec of daemons) {
    const [name, address] = spec.split('@') as [string, string | undefined];
    const c = await ensureDaemonCert(join(dir, 'tls'), name, address);
    lines.push(`${c.created ? 'created' : 'kept'} ${name}: certificate ${c.cert}, key ${c.key} (0600; copy both and the CA certificate to ${name}'s host)`);
  }
  for (const name of pki) {
    const k = await ensurePkiKeypair(join(dir, 'pki'), name);
    lines.push(
      name === 'master'
        ? `${k.created ? 'created' : 'kept'} master keypair ${k.pem} (0600: into the safe, NOT onto any client) and its public half ${k.cert} (every client's PKI Master Key)`
        : `${k.created ? 'created' : 'kept'} ${name}: PKI keypair ${k.pem} (0600; only on ${name}'s host: its PKI Keypair)`,
    );
  }
  ctx.out(lines.join('\n'));
  return 0;
}

/**
 * `bacula tls fd` on a client: its bacula-fd.conf with TLS and PKI data encryption added
 * (printed, or written in place with --write, kept 0600). A separate step from `install`,
 * which never writes in /etc/bacula.
 */
export async function fd(ctx: CommandContext, opts: Record<string, unknown>): Promise<number> {
  const file = (opts.fdConfig as string | undefined) ?? '/etc/bacula/bacula-fd.conf';
  for (const k of ['dir', 'client', 'director'] as const) if (typeof opts[k] !== 'string') throw new UsageError(`bacula tls fd: --${k} is required`);
  const text = fileDaemonTls(readFileSync(file, 'utf8'), { dir: opts.dir as string, client: opts.client as string, directorName: opts.director as string });
  if (!opts.write) {
    ctx.out(text);
    return 0;
  }
  writeFileAtomic(file, text, { mode: statSync(file).mode & 0o777 & ~0o077 });
  ctx.out(`wrote ${file}: TLS required, PKI signatures and encryption on; then bacula-fd -t -c ${file} && systemctl restart bacula-fd`);
  return 0;
}
