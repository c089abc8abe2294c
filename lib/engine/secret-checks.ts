import { lstatSync } from 'node:fs';
import type { LoadedConfig } from '../config/load.js';
import { ConfigError } from '../errors.js';

/**
 * The files that hold our secrets (passphrases, the SSH key, TLS private keys): each must be a
 * regular file owned by root that nobody else can read or write. `config validate` calls
 * checkSecretFiles; a key another user can read is a key a site owner's PHP can send away.
 */

export interface SecretFile {
  readonly key: string;
  readonly path: string;
}

/** The configured secret files of the engine in use. */
export function secretFiles(loaded: LoadedConfig): SecretFile[] {
  const c = loaded.config;
  const all: [string, string | undefined][] =
    c.engine === 'borg' ? [['borg.passphrase_file', c.borg.passphrase_file], ['borg.ssh_key', c.borg.ssh_key]]
    : c.engine === 'restic' ? [['restic.password_file', c.restic.password_file], ['restic.tls_client_cert', c.restic.tls_client_cert]]
    : c.engine === 'duplicity' ? [['duplicity.passphrase_file', c.duplicity.passphrase_file]]
    : [];
  return all.filter((e): e is [string, string] => !!e[1]).map(([key, path]) => ({ key, path }));
}

/** One line per problem: missing, not a regular file, not root's, readable or writable by others. */
export function secretFileProblems(loaded: LoadedConfig, uid = 0): string[] {
  const problems: string[] = [];
  for (const { key, path } of secretFiles(loaded)) {
    let st;
    try {
      st = lstatSync(path);
    } catch {
      problems.push(`${key} ${path}: no such file`);
      continue;
    }
    if (!st.isFile()) problems.push(`${key} ${path}: not a regular file (a symlink or directory is not checked and not trusted)`);
    else if (st.uid !== uid) problems.push(`${key} ${path}: owned by uid ${st.uid}, not root (chown root:root)`);
    else if ((st.mode & 0o077) !== 0) problems.push(`${key} ${path}: mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}, readable or writable by others (chmod 0600)`);
  }
  return problems;
}

export function checkSecretFiles(loaded: LoadedConfig): void {
  const problems = secretFileProblems(loaded);
  if (problems.length) throw new ConfigError(`secret files:\n  ${problems.join('\n  ')}`, loaded.file, problems.length === 1 ? secretFiles(loaded).find((s) => problems[0]!.startsWith(s.key))?.key : undefined);
}
