import { join } from 'node:path';
import { ensureCa, ensureDaemonCert, ensurePkiKeypair } from '../../engine/bacula-tls.js';
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
