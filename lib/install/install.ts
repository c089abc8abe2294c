import { existsSync, readFileSync, rmSync, rmdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { configFileFor, parseConfigText, type LoadedConfig } from '../config/load.js';
import { resolvePaths, underRoot } from '../config/paths.js';
import type { Config } from '../config/schema.js';
import type { EngineName } from '../engine/types.js';
import { UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import { openPanel } from '../panel/cpcmd.js';
import { EXPORT_SCOPE, scopeDisable, scopeRestore, scopeStatus } from '../panel/scope.js';
import { quote } from '../proc/command.js';
import { isExecutable } from '../proc/which.js';
import { writeFileAtomic } from '../atomic-file.js';
import { packagePaths } from '../package-paths.js';
import { checkCronName, isOurCronEntry, renderCronEntry } from './cron-entry.js';
import { isOurWrapper, renderWrapper } from './wrapper.js';
import { baculaSteps } from './bacula-steps.js';
import { baculaFdTlsStep, type FdTlsOptions } from './bacula-fd-tls.js';
import { binlogStep } from './binlog-unit.js';

export interface InstallOptions {
  /** --root: every system path goes below it (default /). */
  readonly root?: string;
  /** --config: an explicit config file (else the default under the root). */
  readonly config?: string;
  /** --engine: written into a newly created config only. */
  readonly engine?: EngineName;
  /** Absolute node binary for the cron entry (the CLI passes process.execPath). */
  readonly node: string;
  /** Absolute path of <pkg>/dist/cron.daily/apiscp-backup.js */
  readonly entry: string;
  readonly dryRun?: boolean;
  readonly log: Logger;
  /** config/config.example.yaml by default (found from the package root). */
  readonly template?: string;
  /** Where cpcmd is looked up ($CPCMD); default process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /** Bacula over a WAN: write the file daemon's TLS and PKI (./bacula-fd-tls.ts). */
  readonly baculaTls?: FdTlsOptions;
}

export interface InstallResult {
  /** Nothing was (or, in a dry run, would be) changed. */
  readonly changed: boolean;
  readonly actions: readonly string[];
  readonly nextSteps: readonly string[];
  /** What the CLI prints. */
  readonly text: string;
}

/**
 * Put the toolkit in place: a config (only when none exists: an admin's file is never
 * overwritten), the cron.daily entry, and the panel's nightly exports switched off so ours are the
 * only ones. Safe to run again: a second install changes nothing and says so.
 */
export async function install(options: InstallOptions): Promise<InstallResult> {
  const root = resolve(options.root ?? '/');
  const dry = options.dryRun === true;
  const would = (text: string): string => (dry ? `would ${text}` : text);
  const actions: string[] = [];
  const notes: string[] = [];
  let changed = false;

  if (!isExecutable(options.node) || !statSync(options.node).isFile()) throw new UsageError(`node binary ${options.node} is not an executable file (pass --node /absolute/path/to/node)`);
  if (/\/\.nvm\//.test(options.node)) {
    notes.push(`node ${options.node} belongs to nvm: \`nvm install\`/\`nvm uninstall\` can remove it and the nightly run would fail; a fixed path (e.g. a system package, or a /usr/local/bin/node symlink) is safer`);
  }
  if (!existsSync(options.entry)) throw new UsageError(`nightly entry ${options.entry} does not exist (run \`npm run build\` in the package first)`);

  // 1. Config: keep an existing one; otherwise start from the documented template.
  const { file: configFile } = configFileFor({ file: options.config, root });
  let text: string;
  if (existsSync(configFile)) {
    text = readFileSync(configFile, 'utf8');
    actions.push(`config ${configFile} exists: kept as it is`);
  } else {
    text = newConfigText(options.template ?? defaultTemplate(), options.engine, root);
    parseConfigText(text, configFile); // a broken template must fail here, not at 3 a.m.
    if (!dry) writeFileAtomic(configFile, text, { mode: 0o640, dirMode: 0o755 });
    actions.push(would(`write config ${configFile}${options.engine ? ` (engine: ${options.engine})` : ''}`));
    changed = true;
  }
  const loaded = loadedFrom(text, configFile, root);
  const { config, paths } = loaded;
  if (options.engine && options.engine !== config.engine) {
    notes.push(`--engine ${options.engine} was not applied: ${configFile} already says engine: ${config.engine} (edit it to change)`);
  }

  // 2. The cron entry.
  checkCronName(config.cron.name);
  const cronFile = join(paths.cronDir, config.cron.name);
  const entryText = renderCronEntry({ node: options.node, entry: options.entry, config: configFile });
  const existing = readIfExists(cronFile);
  if (existing === entryText && (statSync(cronFile).mode & 0o777) === 0o755) {
    actions.push(`cron entry ${cronFile}: already installed`);
  } else if (existing !== undefined && !isOurCronEntry(existing)) {
    throw new UsageError(`${cronFile} exists and was not written by apiscp-backup: move it away or set cron.name`);
  } else {
    if (!dry) writeFileAtomic(cronFile, entryText, { mode: 0o755, dirMode: 0o755 });
    actions.push(would(`${existing === undefined ? 'install' : 'update'} cron entry ${cronFile} (0755): ${lastLine(entryText)}`));
    changed = true;
  }

  // 2b. One fixed path for the CLI, whatever node this server has: the Bacula add-in's single
  // template calls it on every client (and admins' own scripts can too).
  const wrapperFile = underRoot(root, config.bacula.wrapper);
  const wrapperText = renderWrapper({ node: options.node, cli: cliScript(options), config: configFile });
  const existingWrapper = readIfExists(wrapperFile);
  if (existingWrapper === wrapperText && (statSync(wrapperFile).mode & 0o777) === 0o755) {
    actions.push(`wrapper ${wrapperFile}: already installed`);
  } else if (existingWrapper !== undefined && !isOurWrapper(existingWrapper)) {
    notes.push(`${wrapperFile} exists and was not written by apiscp-backup: left alone (set bacula.wrapper to another path)`);
  } else {
    if (!dry) writeFileAtomic(wrapperFile, wrapperText, { mode: 0o755, dirMode: 0o755 });
    actions.push(would(`${existingWrapper === undefined ? 'install' : 'update'} wrapper ${wrapperFile} (0755): ${lastLine(wrapperText)}`));
    changed = true;
  }

  // 2b'. Bacula over a WAN, when asked: the file daemon's TLS and PKI data encryption.
  if (options.baculaTls) {
    if (config.engine !== 'bacula') throw new UsageError(`--tls-dir is for engine bacula (${configFile} says engine: ${config.engine})`);
    const fd = baculaFdTlsStep(loaded, root, options.baculaTls, dry);
    actions.push(...fd.actions);
    changed ||= fd.changed;
  }

  // 2c. Point in time (docs/point-in-time.md): the binlog follower's unit, or how to turn binlogs on.
  const pitr = await binlogStep(loaded, root, { node: options.node, cli: cliScript(options), config: configFile, dry, log: options.log });
  actions.push(...pitr.actions);
  notes.push(...pitr.notes);
  changed ||= pitr.changed;

  // 3. The panel's own nightly exports race our dumps: switch them off, remembering the old value.
  const panel = openPanel(config, { env: options.env, log: options.log });
  if (!panel) {
    actions.push(`no ApisCP panel found (cpcmd): scope ${EXPORT_SCOPE} left alone`);
  } else if (dry) {
    const status = await scopeStatus(loaded, { env: options.env, log: options.log });
    const how = status.route === 'bootstrapper' ? ` (an older panel: scope:set ${status.scope} true, then upcp -sb apnscp/crons)` : '';
    actions.push(status.enabled ? `would disable ${status.scope}${how} (now on; the old value is recorded for uninstall)` : `${status.scope}: already disabled`);
    changed ||= status.enabled;
  } else {
    const change = await scopeDisable(loaded, { env: options.env, log: options.log });
    const how = change.route === 'bootstrapper' ? ' (an older panel without the scope: Bootstrapper route, upcp -sb apnscp/crons)' : '';
    actions.push(change.changed ? `${change.message}${how}; the old value is recorded in ${join(paths.stateDir, 'scope.json')} for uninstall` : `${change.scope}: already disabled`);
    actions.push(`panel nightly export (${change.nightly.file}): ${change.nightly.text}`);
    if (change.nightly.stopped === false) notes.push(`the panel's nightly export is not stopped: ${change.nightly.text}; its exports would race the backup`);
    changed ||= change.changed;
  }

  const nextSteps = changed ? stepsFor(config.engine, { configFile, paths: loaded.paths, cli: cliCommand(options), wrapper: wrapperFile, baculaEtc: underRoot(root, config.bacula.etc) }) : [];
  const head = dry ? 'dry run: nothing was changed' : changed ? 'installed' : 'already installed: nothing changed';
  const lines = [head, ...actions.map((a) => `  - ${a}`), ...notes.map((n) => `note: ${n}`), ...(nextSteps.length ? ['next steps:', ...nextSteps.map((s) => `  - ${s}`)] : [])];
  for (const a of actions) options.log.info(a);
  for (const n of notes) options.log.warn(n);
  return { changed, actions, nextSteps, text: lines.join('\n') + '\n' };
}

export interface UninstallOptions {
  readonly root?: string;
  readonly config?: string;
  /** Also remove the config file, the state dir, the dumps dir and the log. */
  readonly purge?: boolean;
  readonly dryRun?: boolean;
  readonly log: Logger;
  readonly env?: NodeJS.ProcessEnv;
}

/** Undo install: the entry goes, the scope goes back to what it was; data stays unless purge. */
export async function uninstall(options: UninstallOptions): Promise<{ actions: readonly string[]; text: string }> {
  const root = resolve(options.root ?? '/');
  const dry = options.dryRun === true;
  const would = (text: string): string => (dry ? `would ${text}` : text);
  const actions: string[] = [];
  const { file: configFile } = configFileFor({ file: options.config, root });
  const loaded = loadedFrom(readIfExists(configFile) ?? '', configFile, root);
  const { config, paths } = loaded;

  // The entry first: a nightly run starting mid-uninstall would disable the scope again.
  const cronFile = join(paths.cronDir, config.cron.name);
  const existing = readIfExists(cronFile);
  if (existing === undefined) actions.push(`cron entry ${cronFile}: not installed`);
  else if (!isOurCronEntry(existing)) actions.push(`cron entry ${cronFile} was not written by apiscp-backup: left alone`);
  else {
    if (!dry) rmSync(cronFile);
    actions.push(would(`remove cron entry ${cronFile}`));
  }

  const wrapperFile = underRoot(root, config.bacula.wrapper);
  const wrapper = readIfExists(wrapperFile);
  if (wrapper !== undefined && isOurWrapper(wrapper)) {
    if (!dry) rmSync(wrapperFile);
    actions.push(would(`remove wrapper ${wrapperFile}`));
  }

  // Before any purge: the recorded scope value lives in the state dir.
  const panel = openPanel(config, { env: options.env, log: options.log });
  if (!panel) actions.push(`no ApisCP panel found (cpcmd): scope ${EXPORT_SCOPE} left alone`);
  else if (dry) {
    const status = await scopeStatus(loaded, { env: options.env, log: options.log });
    actions.push(status.record ? `would restore scope ${EXPORT_SCOPE} to ${status.record.previous ? 'on' : 'off'}` : `scope ${EXPORT_SCOPE}: nothing recorded to restore`);
  } else {
    actions.push((await scopeRestore(loaded, { env: options.env, log: options.log })).message);
  }

  if (options.purge) {
    for (const dir of [paths.stateDir, paths.dumpsDir]) {
      checkPurgeable(dir, paths.root, paths.home);
      if (existsSync(dir)) {
        if (!dry) rmSync(dir, { recursive: true, force: true });
        actions.push(would(`remove ${dir}`));
      }
    }
    for (const file of [paths.logFile, configFile, ...(config.monitor.prometheus_textfile ? [underRoot(paths.root, config.monitor.prometheus_textfile)] : [])]) {
      if (existsSync(file)) {
        if (!dry) rmSync(file, { force: true });
        actions.push(would(`remove ${file}`));
      }
    }
    if (!dry) removeIfEmpty(dirname(configFile));
  } else {
    actions.push(`kept config ${configFile}, dumps ${paths.dumpsDir} and state ${paths.stateDir} (--purge removes them)`);
  }
  for (const a of actions) options.log.info(a);
  return { actions, text: [dry ? 'dry run: nothing was changed' : 'uninstalled', ...actions.map((a) => `  - ${a}`)].join('\n') + '\n' };
}

/** The template with `engine:` set, and under a --root sandbox `paths.root` too, so the entry's runs stay inside it. */
function newConfigText(template: string, engine: EngineName | undefined, root: string): string {
  if (!existsSync(template)) throw new UsageError(`config template ${template} is missing: the package is incomplete`);
  const raw = readFileSync(template, 'utf8');
  if (!engine && root === '/') return raw;
  const doc = parseDocument(raw);
  if (engine) doc.set('engine', engine);
  if (root !== '/') doc.setIn(['paths', 'root'], root);
  return doc.toString();
}

function loadedFrom(text: string, file: string, root: string): LoadedConfig {
  const parsed = parseConfigText(text, file);
  const config: Config = root === '/' ? parsed : { ...parsed, paths: { ...parsed.paths, root } };
  return { config, file, paths: resolvePaths(config) };
}

/** config/config.example.yaml at the package root. */
function defaultTemplate(): string {
  return join(packagePaths().root, 'config', 'config.example.yaml');
}

/** How the admin calls the CLI: the same node, the bin next to the installed nightly entry. */
function cliCommand(options: InstallOptions): string {
  return `${quote(options.node)} ${quote(cliScript(options))}`;
}

function cliScript(options: InstallOptions): string {
  return join(dirname(dirname(options.entry)), 'scripts', 'apiscp-backup.js');
}

function stepsFor(engine: EngineName, ctx: { configFile: string; paths: LoadedConfig['paths']; cli: string; wrapper: string; baculaEtc: string }): string[] {
  const { cli, configFile } = ctx;
  const common = [`check the setup: ${cli} config validate && ${cli} status`];
  switch (engine) {
    case 'none':
      return [
        `engine none makes dumps only: point your backup software at ${ctx.paths.dumpsDir} and paths.include (keep ACLs/xattrs and numeric ids), after cron.daily has run`,
        `or set engine: in ${configFile} (bacula, duplicity, restic, borg)`,
        ...common,
      ];
    case 'bacula':
      return [...baculaSteps({ cli, paths: ctx.paths, wrapper: ctx.wrapper, baculaEtc: ctx.baculaEtc }), ...common];
    case 'duplicity':
      return [
        `set duplicity.target and duplicity.passphrase_file (0600) in ${configFile}`,
        `duplicity keeps no ACLs/xattrs: a sidecar is stored with the dumps; after a restore run ${cli} restore acls --from <dir>`,
        `first backup now: ${cli} run`,
        ...common,
      ];
    case 'restic':
      return [
        `set restic.repository and restic.password_file (0600) in ${configFile}`,
        'create the repository once: apiscp-backup repo-init (runs restic init with those settings)',
        `first backup now: ${cli} run`,
        ...common,
      ];
    case 'borg':
      return [
        `set borg.repository and borg.passphrase_file (0600) in ${configFile}`,
        'create the repository once: apiscp-backup repo-init (borg init --encryption=repokey-blake2; keep a copy of the key: borg key export)',
        `first backup now: ${cli} run`,
        ...common,
      ];
  }
}

/** Purge deletes whole trees: refuse anything that is not clearly ours (a typo'd dumps.dir: /home). */
function checkPurgeable(dir: string, root: string, home: string): void {
  const rel = relative(root, dir);
  const depth = rel.split('/').filter(Boolean).length;
  if (rel.startsWith('..') || depth < 2 || home === dir || home.startsWith(dir + '/')) {
    throw new UsageError(`refusing to purge ${dir}: not a dedicated directory (check dumps.dir / state.dir)`);
  }
}

function readIfExists(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function removeIfEmpty(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // not empty (an admin's own files) or already gone: leave it
  }
}

function lastLine(text: string): string {
  return text.trimEnd().split('\n').at(-1) ?? '';
}
