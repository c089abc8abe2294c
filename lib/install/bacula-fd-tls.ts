import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../atomic-file.js';
import { secretFileProblems } from '../config/checks.js';
import type { LoadedConfig } from '../config/load.js';
import { underRoot } from '../config/paths.js';
import { fileDaemonTls } from '../engine/bacula-tls.js';
import { UsageError } from '../errors.js';

/** `install --engine bacula --tls-dir DIR --client NAME --director NAME`: the file daemon's side of Bacula over a WAN. */
export interface FdTlsOptions {
  /** The files copied from the director host (tls/ca.crt, tls/<client>.crt|key, pki/<client>.pem, pki/master.cert). */
  readonly dir: string;
  readonly client: string;
  readonly director: string;
}

/**
 * bacula-fd.conf (under bacula.etc) gets TLS required toward director and storage and PKI data
 * encryption (its own keypair, the master key's public half), as `bacula tls fd --write` does;
 * install writes in /etc/bacula only when asked this way. The private keys must be root's and
 * 0600 (a key others can read is refused, nothing written); the master private key must not be here.
 */
export function baculaFdTlsStep(loaded: LoadedConfig, root: string, opts: FdTlsOptions, dry: boolean): { actions: string[]; changed: boolean } {
  const fdConf = join(underRoot(root, loaded.config.bacula.etc), 'bacula-fd.conf');
  let text: string;
  try {
    text = readFileSync(fdConf, 'utf8');
  } catch (err) {
    throw new UsageError(`${fdConf}: ${(err as Error).message} (install bacula-fd first)`);
  }
  const secrets = [join(opts.dir, `tls/${opts.client}.key`), join(opts.dir, `pki/${opts.client}.pem`)];
  const problems = secrets.flatMap((f) => secretFileProblems('--tls-dir', f));
  if (problems.length) throw new UsageError(`bacula TLS/PKI keys: ${problems.map((p) => `${p.problem} (fix: ${p.fix})`).join('; ')}`);
  const updated = fileDaemonTls(text, { dir: opts.dir, client: opts.client, directorName: opts.director });
  if (updated === text) return { actions: [`${fdConf}: TLS and PKI encryption already set`], changed: false };
  // The fd's config holds its Director password: never readable by others, whatever it was.
  if (!dry) writeFileAtomic(fdConf, updated, { mode: statSync(fdConf).mode & 0o777 & ~0o077 });
  return {
    actions: [`${dry ? 'would add' : 'added'} TLS (required, director ${opts.director} only) and PKI data encryption (keypair ${opts.client}, master key's public half) to ${fdConf}; then: bacula-fd -t -c ${fdConf} && systemctl restart bacula-fd`],
    changed: true,
  };
}
