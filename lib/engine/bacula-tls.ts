import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../errors.js';
import { cmd } from '../proc/command.js';
import { run } from '../proc/run.js';
import { resolveTool } from '../proc/which.js';

/**
 * Bacula over a WAN (docs/offsite.md, "Bacula"): a small CA and one certificate per daemon made
 * with openssl, the TLS directives each resource needs, and the file daemon's PKI data
 * encryption (a per-server keypair plus the fleet master key's public half). Private keys are
 * written 0600 and never pass through argv.
 */

export interface TlsFiles {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

function openssl(): string {
  return resolveTool('openssl', 'openssl', 'openssl');
}

function privateFile(file: string): void {
  chmodSync(file, 0o600);
}

/** The CA (ca.key 0600, ca.crt) in `dir`, made once; kept if it exists (the admin's own works too). */
export async function ensureCa(dir: string, days = 3650): Promise<{ key: string; cert: string; created: boolean }> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const key = join(dir, 'ca.key');
  const cert = join(dir, 'ca.crt');
  if (existsSync(key) && existsSync(cert)) return { key, cert, created: false };
  await run(cmd(openssl(), ['req', '-x509', '-newkey', 'rsa:3072', '-nodes', '-keyout', key, '-out', cert, '-subj', '/CN=apiscp-backup Bacula CA', '-days', String(days)]));
  privateFile(key);
  return { key, cert, created: true };
}

/**
 * A certificate for one daemon, CN = its Bacula name (what `TLS Allowed CN` checks), with the
 * address it is reached at in subjectAltName when given. Kept if it exists.
 */
export async function ensureDaemonCert(dir: string, name: string, address?: string, days = 825): Promise<TlsFiles & { created: boolean }> {
  if (!NAME.test(name)) throw new UsageError(`daemon name ${JSON.stringify(name)}: letters, digits, _ . - only`);
  const ca = await ensureCa(dir);
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.crt`);
  if (existsSync(key) && existsSync(cert)) return { ca: ca.cert, cert, key, created: false };
  const csr = join(dir, `${name}.csr`);
  // Bacula 9.6 checks the host it connected to against the certificate's DNS names and CN only,
  // never against IP entries: an address goes in as a DNS name too.
  const san = [`DNS:${name}`, ...(address ? [`DNS:${address}`, ...(/^[\d.]+$|:/.test(address) ? [`IP:${address}`] : [])] : [])].join(',');
  await run(cmd(openssl(), ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${name}`, '-addext', `subjectAltName=${san}`]));
  privateFile(key);
  await run(cmd(openssl(), ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', String(days), '-copy_extensions', 'copy', '-out', cert]));
  return { ca: ca.cert, cert, key, created: true };
}

/**
 * A PKI keypair (RSA: Bacula's data encryption needs it) as one PEM, key + certificate, 0600:
 * `name.pem`; the certificate alone in `name.cert` (the master key's public half goes to clients).
 */
export async function ensurePkiKeypair(dir: string, name: string, days = 3650): Promise<{ pem: string; cert: string; created: boolean }> {
  if (!NAME.test(name)) throw new UsageError(`keypair name ${JSON.stringify(name)}: letters, digits, _ . - only`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const pem = join(dir, `${name}.pem`);
  const cert = join(dir, `${name}.cert`);
  if (existsSync(pem) && existsSync(cert)) return { pem, cert, created: false };
  const key = join(dir, `${name}.pkikey`);
  await run(cmd(openssl(), ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-subj', `/CN=${name} data encryption`, '-days', String(days)]));
  privateFile(key);
  writeFileSync(pem, readFileSync(key, 'utf8') + readFileSync(cert, 'utf8'), { mode: 0o600 });
  privateFile(pem);
  return { pem, cert, created: true };
}

const q = (s: string): string => JSON.stringify(s);

/**
 * TLS lines for one resource. `server`: the side that accepts (fd's and sd's Director resource,
 * sd's Storage resource): it demands and checks the peer's certificate and, with `allowedCns`,
 * its name. The connecting side (the director's Client and Storage, the fd's FileDaemon toward
 * the storage) presents its own certificate and checks the server's against the CA.
 */
export function tlsDirectives(files: TlsFiles, opts: { server: boolean; allowedCns?: readonly string[] }): string[] {
  const lines = ['TLS Enable = yes', 'TLS Require = yes', `TLS CA Certificate File = ${q(files.ca)}`, `TLS Certificate = ${q(files.cert)}`, `TLS Key = ${q(files.key)}`];
  if (opts.server) {
    lines.push('TLS Verify Peer = yes');
    for (const cn of opts.allowedCns ?? []) lines.push(`TLS Allowed CN = ${q(cn)}`);
  }
  return lines;
}

/** The file daemon's PKI lines: sign and encrypt with its own keypair, and for the master key too. */
export function pkiDirectives(keypair: string, masterCert: string): string[] {
  return ['PKI Signatures = Yes', 'PKI Encryption = Yes', `PKI Keypair = ${q(keypair)}`, `PKI Master Key = ${q(masterCert)}`];
}

/** A resource's body: no braces but the add-in's `${VAR}` placeholders (its generator fills them later). */
const BODY = '(?:[^{}$]|\\$\\{[A-Za-z0-9_]*\\}|\\$(?!\\{))*?';

/**
 * `lines` placed inside the first resource `type` of a Bacula config (optionally the one whose
 * Name is `name`), before its closing brace; the text is otherwise untouched.
 */
export function addToResource(text: string, type: string, lines: readonly string[], name?: string): string {
  const re = new RegExp(`(^|\\n)(${type}\\s*\\{)(${BODY})(\\n\\})`, 'g');
  let done = false;
  const out = text.replace(re, (all, lead: string, open: string, body: string, close: string) => {
    if (done) return all;
    if (name !== undefined && !new RegExp(`\\n\\s*Name\\s*=\\s*"?${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"?\\s*\\n`).test(`${body}\n`)) return all;
    done = true;
    // Idempotent: a line the resource already has (a re-run over our own output) is not repeated.
    const have = new Set(body.split('\n').map((l) => l.trim()));
    const missing = lines.filter((l) => !have.has(l));
    return `${lead}${open}${body}${missing.map((l) => `\n  ${l}`).join('')}${close}`;
  });
  if (!done) throw new UsageError(`no ${type} resource${name ? ` named ${name}` : ''} to add TLS to`);
  return out;
}

/** `lines` added to every resource `type` (the add-in's slot files hold several Storage resources). */
export function addToEveryResource(text: string, type: string, lines: readonly string[]): string {
  let out = text;
  for (const name of resourceNames(text, type)) out = addToResource(out, type, lines, name);
  return out;
}

function resourceNames(text: string, type: string): string[] {
  const re = new RegExp(`(^|\\n)${type}\\s*\\{(${BODY})\\n\\}`, 'g');
  return [...text.matchAll(re)].map((m) => /\n\s*Name\s*=\s*"?([^"\n]*?)"?\s*(\n|$)/.exec(`${m[2]}\n`)?.[1]).filter((n): n is string => n !== undefined);
}

/** The files `bacula tls init --dir DIR` made for daemon `name`. */
export function tlsFilesIn(dir: string, name: string): TlsFiles {
  return { ca: join(dir, 'tls/ca.crt'), cert: join(dir, `tls/${name}.crt`), key: join(dir, `tls/${name}.key`) };
}

/**
 * The director's side of its connection to a client (the Client resource `bacula config`
 * writes): present the director's certificate, require TLS, check the file daemon's against the CA
 * and its address.
 */
export function directorClientTls(dir: string, directorName: string): string[] {
  const files = tlsFilesIn(dir, directorName);
  for (const f of Object.values(files)) if (!existsSync(f)) throw new UsageError(`${f} is missing: run \`apiscp-backup bacula tls init --dir ${dir} --daemon ${directorName}\` first`);
  return tlsDirectives(files, { server: false });
}

/**
 * A client's bacula-fd.conf with TLS and PKI added, from the files `bacula tls init` made and
 * the admin copied to this client's `dir`: the director must present `directorName`'s
 * certificate; the fd presents its own to the director and the storage daemon; data is signed and
 * encrypted with its keypair and for the master key, whose private half must not be here.
 */
export function fileDaemonTls(fdConf: string, opts: { dir: string; client: string; directorName: string }): string {
  const files = tlsFilesIn(opts.dir, opts.client);
  const keypair = join(opts.dir, `pki/${opts.client}.pem`);
  const master = join(opts.dir, 'pki/master.cert');
  for (const f of [...Object.values(files), keypair, master]) if (!existsSync(f)) throw new UsageError(`${f} is missing: copy it from the director host (bacula tls init --daemon ${opts.client} --pki ${opts.client} --pki master)`);
  if (existsSync(join(opts.dir, 'pki/master.pem'))) {
    throw new UsageError(`${join(opts.dir, 'pki/master.pem')}: the master key's private half must not be on a client (a hacked client could read every server's backups); keep only master.cert here`);
  }
  const withDirector = addToResource(fdConf, 'Director', tlsDirectives(files, { server: true, allowedCns: [opts.directorName] }));
  return addToResource(withDirector, 'FileDaemon', [...tlsDirectives(files, { server: false }), ...pkiDirectives(keypair, master)]);
}
