import { readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '../../atomic-file.js';
import { underRoot } from '../../config/paths.js';
import { renderBaculaClient, renderBaculaConfig } from '../../engine/bacula.js';
import { addToEveryResource, addToResource, directorClientTls } from '../../engine/bacula-tls.js';
import { addinHookCommands, addinPaths, detectBaculaLayout, inspectAddinTemplate, renderAddinBaseConf } from '../../engine/bacula-addin.js';
import { ConfigError, UsageError } from '../../errors.js';
import { whichSystem } from '../../proc/which.js';
import { backupGlobs } from '../../plan/paths.js';
import type { CommandContext } from '../context.js';
import { packagePaths } from '../../package-paths.js';

/** The include file `--write` makes for a stock director (the admin adds one @-line for it). */
export const STOCK_INCLUDE = 'apiscp-backup-dir.conf';
/** With --tls-dir: the director's TLS lines, included inside each Storage resource of a stock bacula-dir.conf. */
export const STOCK_TLS_INCLUDE = 'apiscp-backup-dir-tls.conf';

/**
 * The director's side. On the ApisCP add-in's director: local.d/servers/base.conf (the installed
 * template with our hooks in its Job: every server's job runs them). Elsewhere: a FileSet + Job
 * fragment for a stock bacula-dir.conf. Printed, or written with --write (idempotent).
 */
export default async function baculaConfig(ctx: CommandContext, opts: Record<string, unknown>): Promise<number> {
  const b = ctx.loaded.config.bacula;
  const { paths } = ctx.loaded;
  const etc = (opts.etc as string | undefined) ?? underRoot(paths.root, b.etc);
  const wanted = (opts.layout as string | undefined) ?? 'auto';
  const layout = wanted === 'auto' ? detectBaculaLayout(etc) : wanted;
  // --tls-dir: the Client resource requires TLS with the director's certificate (docs/offsite.md).
  const tls = typeof opts.tlsDir === 'string' ? directorClientTls(opts.tlsDir, (opts.tlsName as string | undefined) ?? 'bacula-dir') : undefined;
  const withTls = (text: string): string => (tls ? addToResource(text, 'Client', tls) : text);
  if (layout === 'addin') return addin(ctx, etc, opts, withTls, tls);

  // A fleet director in the stock layout: with --address the fragment starts with this server's
  // Client resource (one such fragment per ApisCP server).
  const client = (opts.client as string | undefined) ?? b.client;
  const address = opts.address as string | undefined;
  const passwordFile = opts.passwordFile as string | undefined;
  if ((address === undefined) !== (passwordFile === undefined)) throw new ConfigError('--address and --password-file go together (the Client resource needs both)', undefined);
  const clientResource =
    address === undefined
      ? ''
      : withTls(renderBaculaClient({ client, address, fdPort: opts.fdPort === undefined ? undefined : Number(opts.fdPort), password: readPassword(passwordFile!) })) + '\n';
  const text = clientResource + renderBaculaConfig({
    client,
    fileset: (opts.fileset as string | undefined) ?? b.fileset,
    job: (opts.job as string | undefined) ?? b.job,
    jobdefs: (opts.jobdefs as string | undefined) ?? b.jobdefs,
    node: absoluteProgram(opts.node) ?? process.execPath,
    entry: absolute(opts.entry) ?? installedEntry(),
    ...backupGlobs(paths),
    configFile: ctx.loaded.file,
  });
  // The director's Storage resources live in bacula-dir.conf (the package's conffile, never
  // edited here): their TLS lines go into a file of ours that Bacula includes inside each one.
  const tlsFile = join(etc, STOCK_TLS_INCLUDE);
  const tlsText = tls ? `# apiscp-backup: the director's TLS toward the storage daemon; included inside each Storage resource.\n${tls.map((l) => `  ${l}`).join('\n')}\n` : undefined;
  const tlsStep = `inside each Storage resource of ${join(etc, 'bacula-dir.conf')} add the line:  @${tlsFile}`;
  if (!opts.write) {
    ctx.out(text + (tlsText ? `\n# ${tlsStep}; ${tlsFile} holds:\n${tlsText.replace(/^/gm, '#')}` : ''));
    return 0;
  }
  // Never appended to bacula-dir.conf: an included file of our own is replaced whole, and on
  // RHEL/Debian bacula-dir.conf is the package's conffile.
  const file = join(etc, STOCK_INCLUDE);
  const out: string[] = [];
  for (const [f, t] of [[file, text], ...(tlsText ? [[tlsFile, tlsText]] : [])] as const) {
    const same = readOrUndefined(f) === t;
    if (!same) writeFileAtomic(f, t, { mode: 0o640, dirMode: 0o755 });
    out.push(same ? `${f}: unchanged` : `wrote ${f}`);
  }
  ctx.out(
    [
      ...out,
      `include it once from ${join(etc, 'bacula-dir.conf')} with the line:  @${file}`,
      ...(tlsText ? [tlsStep] : []),
      `then: bacula-dir -t -c ${join(etc, 'bacula-dir.conf')} && systemctl reload bacula-dir`,
    ].join('\n'),
  );
  return 0;
}

async function addin(ctx: CommandContext, etc: string, opts: Record<string, unknown>, withTls: (text: string) => string, tls: readonly string[] | undefined): Promise<number> {
  const p = addinPaths(etc);
  const installed = readOrUndefined(p.installedTemplate);
  if (installed === undefined) throw new UsageError(`${p.installedTemplate} is missing: is the ApisCP Bacula add-in (apnscp-bacula) installed in ${etc}?`);
  const local = readOrUndefined(p.localTemplate);
  const wrapper = absolute(opts.wrapper) ?? underRoot(ctx.loaded.paths.root, ctx.loaded.config.bacula.wrapper);
  const text = withTls(renderAddinBaseConf({ installedTemplate: installed, localTemplate: local, hooks: addinHookCommands({ wrapper }) }));
  const { panelExportRunScript } = inspectAddinTemplate(text);
  const notes = panelExportRunScript
    ? [`note: ${p.localTemplate} also runs backup_dbs.php (the add-in's documented RunScript): remove that RunScript, our hook exports the databases and it would export every database a second time`]
    : [];
  // With TLS, the slot files' Storage resources (director → storage daemon) too: local.d/ copies,
  // which the generator prefers (flexible_check); the RPM's conf.d/ files stay as they are.
  const slots = tls ? addinStorageFiles(etc).map((f) => ({ ...f, text: addToEveryResource(f.local ?? f.installed, 'Storage', tls) })) : [];
  if (!opts.write) {
    ctx.out(text + notes.map((n) => `# ${n}\n`).join('') + slots.map((f) => `\n# ${f.localFile}:\n${f.text}`).join(''));
    return 0;
  }
  const same = local === text;
  if (!same) writeFileAtomic(p.localTemplate, text, { mode: local === undefined ? 0o640 : statSync(p.localTemplate).mode & 0o777, dirMode: 0o700 });
  const slotLines = slots.map((f) => {
    if (f.local === f.text) return `${f.localFile}: unchanged`;
    writeFileAtomic(f.localFile, f.text, { mode: f.local === undefined ? 0o640 : statSync(f.localFile).mode & 0o777, dirMode: 0o700 });
    return `wrote ${f.localFile} (TLS in its Storage resources${f.local === undefined ? `, from ${f.installedFile}` : ''})`;
  });
  ctx.out(
    [
      same ? `${p.localTemplate}: unchanged` : `wrote ${p.localTemplate}${local === undefined ? ` (from ${p.installedTemplate})` : ' (your edits kept, our hooks replaced)'}`,
      ...slotLines,
      `every <name>-Backup job now runs ${wrapper} hook pre-backup/post-backup on its client; each client needs \`apiscp-backup install --engine bacula\``,
      `then: bacula-dir -t -c ${join(etc, 'bacula-dir.conf')} && systemctl reload bacula-dir`,
      ...notes,
    ].join('\n'),
  );
  return 0;
}

/** A path given on our command line, made absolute: it is written into the director's config and run on the client, elsewhere. */
function absolute(value: unknown): string | undefined {
  return typeof value === 'string' ? resolve(value) : undefined;
}

/** A program named on our command line: a path made absolute, a bare name looked up on PATH now (cron and Bacula have other PATHs). */
export function absoluteProgram(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  if (value.includes('/')) return resolve(value);
  const found = whichSystem(value);
  if (!found) throw new UsageError(`${value}: not found on PATH; give its absolute path`);
  return found;
}

/** The file daemon's password: the first line of a file (bacula-fd.conf's Director Password). */
function readPassword(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read --password-file ${file}: ${(err as Error).message}`, undefined);
  }
  const password = text.split('\n')[0]!.trim();
  if (!password) throw new ConfigError(`--password-file ${file} is empty`, undefined);
  return password;
}

/** The add-in's per-slot files that define the director's Storage resources: installed and local copies. */
function addinStorageFiles(etc: string): { installedFile: string; localFile: string; installed: string; local: string | undefined }[] {
  return ['slot-base.conf', 'storage.conf'].map((name) => {
    const installedFile = join(etc, 'conf.d', 'servers', name);
    const localFile = join(etc, 'local.d', 'servers', name);
    const installed = readOrUndefined(installedFile);
    if (installed === undefined) throw new UsageError(`${installedFile} is missing: is the ApisCP Bacula add-in (apnscp-bacula) installed in ${etc}?`);
    return { installedFile, localFile, installed, local: readOrUndefined(localFile) };
  });
}

function readOrUndefined(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** dist/scripts/apiscp-backup.js of this installation. */
export function installedEntry(): string {
  return join(packagePaths().dist, 'scripts', 'apiscp-backup.js');
}
