import { EngineError, ConfigError } from '../errors.js';
import { pathGlobSource } from '../plan/glob.js';
import { baculaFetch, baculaList } from './bacula-restore.js';
import type { Engine } from './types.js';

/**
 * Bacula is driven from outside: its director schedules the job and calls our hooks on the
 * client (RunScript, RunsOnClient = yes). This module only renders the director fragment an admin
 * appends to bacula-dir.conf; the engine object exists so `engine: bacula` is a typed choice.
 */
export const baculaEngine: Engine = {
  name: 'bacula',
  // Bacula keeps POSIX ACLs and xattrs itself when the FileSet says aclsupport/xattrsupport = yes.
  keepsAcls: true,
  drivesBackup: false,
  async check(ctx) {
    // Nothing to probe here: the file daemon may live under any name and the director elsewhere.
    const { client, fileset, job } = ctx.loaded.config.bacula;
    for (const [key, value] of Object.entries({ client, fileset, job })) {
      if (!value.trim()) throw new ConfigError(`bacula.${key} must not be empty`, ctx.loaded.file, `bacula.${key}`);
    }
  },
  async backup() {
    throw new EngineError(
      "Bacula's director runs the backup job; it calls `apiscp-backup hook pre-backup` on this client before the files are read. " +
        'Start the job from bconsole (run job=…) or wait for its Schedule.',
      'bacula',
    );
  },
  list: baculaList,
  fetch: baculaFetch,
};

export interface BaculaConfigOptions {
  client: string;
  fileset: string;
  job: string;
  jobdefs: string;
  /** Absolute path of node: Bacula runs commands with execvp, without a shell or PATH we control. */
  node: string;
  /** Absolute path of the installed entry script (dist/scripts/apiscp-backup.js). */
  entry: string;
  /** Absolute paths or globs (site* matches siteN only), as in paths.include plus dumps.dir. */
  sources: string[];
  excludes: string[];
  storage?: string;
  pool?: string;
  messages?: string;
  schedule?: string;
  /** Passed to the hooks as --config when the config is not at the default place. */
  configFile?: string;
  /**
   * Who lists the sources on the client at job time (both run there via `\|program`, so a site
   * created after this fragment was written is backed up):
   * - 'sh' (default): a /bin/sh loop over the globs rendered here, filtered to siteN; needs
   *   nothing but sh and grep on the client.
   * - 'cli': `apiscp-backup paths`, i.e. lib/plan's matcher reading config.yaml at job time, so
   *   a changed paths.include needs no new fragment. Excludes stay rendered here (Regex).
   */
  fileList?: 'sh' | 'cli';
}

/** A Bacula quoted string: backslash escapes the next character inside "…". */
export function baculaString(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/**
 * One word of a RunScript Command or `|program` line. Bacula splits these itself (bpipe's
 * build_argc_argv): a word may be wrapped whole in '…' or "…", with no escapes inside.
 * `%` would start a job code (%l, %i…), so literal ones are doubled.
 */
export function commandWord(word: string): string {
  if (word.includes('\n')) throw new ConfigError(`cannot pass a newline to Bacula: ${JSON.stringify(word)}`, undefined);
  const w = word.replace(/%/g, '%%');
  if (w !== '' && !/[\s'"]/.test(w)) return w;
  if (!w.includes('"')) return `"${w}"`;
  if (!w.includes("'")) return `'${w}'`;
  throw new ConfigError(`cannot pass both quote characters to Bacula in one word: ${word}`, undefined);
}

/** The hooks' argv (after node and the entry script); job codes stay for the file daemon to fill in. */
export function baculaHookArgs(opts: Pick<BaculaConfigOptions, 'configFile'>): { before: string[]; after: string[]; paths: string[] } {
  // A global option: before the subcommand, where commander always reads it.
  const config = opts.configFile ? ['--config', opts.configFile] : [];
  return {
    before: [...config, 'hook', 'pre-backup', '--engine', 'bacula', '--level', '%l', '--jobid', '%i', '--job', '%n'],
    after: [...config, 'hook', 'post-backup', '--engine', 'bacula', '--status', '%e', '--jobid', '%i', '--job', '%n'],
    paths: [...config, 'paths'],
  };
}

/** Join argv into a Command value; words holding job codes (%l, "%e") keep their single %. */
function commandLine(argv: readonly string[]): string {
  return argv.map((a) => (/^%[a-zA-Z]$/.test(a) ? (a === '%e' ? '"%e"' : a) : commandWord(a))).join(' ');
}

/** The two Command strings (unquoted Bacula values) the Job's RunScripts carry. */
export function baculaHookCommands(opts: Pick<BaculaConfigOptions, 'node' | 'entry' | 'configFile'>): { before: string; after: string; paths: string } {
  for (const p of [opts.node, opts.entry]) {
    if (!p.startsWith('/')) throw new ConfigError(`Bacula runs hooks without a shell or PATH: ${p} must be an absolute path`, undefined);
  }
  const args = baculaHookArgs(opts);
  const line = (rest: string[]): string => commandLine([opts.node, opts.entry, ...rest]);
  return { before: line(args.before), after: line(args.after), paths: line(args.paths) };
}

const GLOB = /[*?[]/;

/** A glob as a POSIX sh word: literal runs double-quoted, glob characters left bare to expand. */
function shGlobWord(glob: string): string {
  return glob
    .split(/([*?]|\[[^\]]+\])/)
    .filter((part) => part !== '')
    .map((part) => (GLOB.test(part) ? part : `"${part.replace(/["$`\\]/g, '\\$&')}"`))
    .join('');
}

/**
 * The client-side program that lists what matches `globs` at job time. The FileSet runs it on
 * the file daemon (`\|program`) so a site created after the director config was written is
 * still backed up. It always exits 0: a non-zero exit makes Bacula fail the whole job, while
 * "no site yet" is a normal state. Output is filtered by pathGlobSource to keep only siteN.
 */
export function clientListCommand(globs: readonly string[]): string {
  for (const g of globs) {
    if (g.includes("'")) throw new ConfigError(`a path handed to Bacula's client-side file list may not contain ': ${g}`, undefined);
  }
  const words = globs.map(shGlobWord).join(' ');
  const regex = globs.map(pathGlobSource).join('|').replace(/[\\"$`]/g, '\\$&');
  const script = `for p in ${words}; do [ -e "$p" ] && echo "$p"; done | grep -E "${regex}"; exit 0`;
  return `/bin/sh -c '${script.replace(/%/g, '%%')}'`;
}

const indent = (lines: string[], by = '  '): string[] => lines.map((l) => by + l);

/**
 * The FileSet: static paths listed as they are, globs expanded on the client at job time.
 * Seen on 9.6.7: the file daemon runs `\|program` lines when it receives the FileSet, which is
 * BEFORE the ClientRunBeforeJob hook; the hook cannot add paths to its own job, so dumps.dir
 * must be (and is) a static entry, and a site created by the hook waits for the next job.
 */
export function renderBaculaFileSet(
  opts: Pick<BaculaConfigOptions, 'fileset' | 'sources' | 'excludes'> & { listCommand?: string },
): string {
  if (opts.sources.length === 0 && !opts.listCommand) throw new ConfigError('nothing to back up: sources is empty', undefined);
  for (const p of [...opts.sources, ...opts.excludes]) {
    if (!p.startsWith('/')) throw new ConfigError(`Bacula FileSet paths must be absolute: ${p}`, undefined);
  }
  const staticSources = opts.sources.filter((s) => !GLOB.test(s));
  const globSources = opts.sources.filter((s) => GLOB.test(s));
  const staticExcludes = opts.excludes.filter((s) => !GLOB.test(s));
  const globExcludes = opts.excludes.filter((s) => GLOB.test(s));
  const include: string[] = [];
  if (globExcludes.length > 0) {
    // Exclude{} takes no wildcards; an Options block that matches and says Exclude = yes does.
    // It must come first: Bacula applies the first Options block whose pattern matches.
    include.push('Options {', ...indent(globExcludes.map((g) => `Regex = ${baculaString(pathGlobSource(g))}`)), '  Exclude = yes', '}');
  }
  include.push(
    'Options {',
    '  signature = MD5',
    // Fortification is POSIX ACLs; overlay whiteouts and opaque dirs are trusted.* xattrs.
    '  aclsupport = yes',
    '  xattrsupport = yes',
    // Reading must not bump atimes that site owners or cleanup jobs rely on.
    '  noatime = yes',
    '}',
  );
  if (opts.listCommand) {
    include.push(`File = ${baculaString('\\|' + opts.listCommand)}`);
  } else {
    include.push(...staticSources.map((s) => `File = ${baculaString(s)}`));
  }
  if (!opts.listCommand && globSources.length > 0) {
    // Backslash-pipe: run on the client, not on the director (plain `|`).
    include.push(`File = ${baculaString('\\|' + clientListCommand(globSources))}`);
  }
  const lines = ['FileSet {', `  Name = ${baculaString(opts.fileset)}`, '  Include {', ...indent(include, '    '), '  }'];
  if (staticExcludes.length > 0) lines.push('  Exclude {', ...indent(staticExcludes.map((s) => `File = ${baculaString(s)}`), '    '), '  }');
  lines.push('}');
  return lines.join('\n') + '\n';
}

export interface BaculaJobOptions {
  job: string;
  jobdefs: string;
  client: string;
  fileset: string;
  /** Command values (unquoted): run on the client before / after the file backup. */
  before?: string;
  after?: string;
  storage?: string;
  pool?: string;
  messages?: string;
  schedule?: string;
  level?: string;
}

/**
 * A Job with client-side RunScripts. Before: FailJobOnError = yes, so failed dumps fail the job
 * (JobStatus f) instead of saving files without databases. After: runs on success and failure
 * so the hook can always record the outcome, and never fails a job whose files were saved.
 */
export function renderBaculaJob(opts: BaculaJobOptions): string {
  const lines = ['Job {', `  Name = ${baculaString(opts.job)}`, `  JobDefs = ${baculaString(opts.jobdefs)}`];
  lines.push(`  Client = ${baculaString(opts.client)}`, `  FileSet = ${baculaString(opts.fileset)}`);
  for (const [key, value] of [['Level', opts.level], ['Storage', opts.storage], ['Pool', opts.pool], ['Messages', opts.messages], ['Schedule', opts.schedule]] as const) {
    if (value) lines.push(`  ${key} = ${baculaString(value)}`);
  }
  if (opts.before !== undefined) {
    lines.push('  RunScript {', '    RunsWhen = Before', '    RunsOnClient = yes', '    FailJobOnError = yes', `    Command = ${baculaString(opts.before)}`, '  }');
  }
  if (opts.after !== undefined) {
    lines.push('  RunScript {', '    RunsWhen = After', '    RunsOnClient = yes', '    RunsOnSuccess = yes', '    RunsOnFailure = yes');
    lines.push('    FailJobOnError = no', `    Command = ${baculaString(opts.after)}`, '  }');
  }
  lines.push('}');
  return lines.join('\n') + '\n';
}

export interface BaculaClientOptions {
  client: string;
  /** Where the director reaches this server's file daemon. */
  address: string;
  fdPort?: number;
  /** The file daemon's Director password (from a file the admin keeps 0600, never argv). */
  password: string;
  catalog?: string;
}

/**
 * The Client resource for one ApisCP server in the stock layout (one per server on a fleet
 * director). Retention and AutoPrune as in Debian's sample: the catalog stays bounded.
 */
export function renderBaculaClient(opts: BaculaClientOptions): string {
  if (!/^[A-Za-z0-9.:_-]+$/.test(opts.address)) throw new ConfigError(`not a host name or address: ${opts.address}`, undefined);
  return [
    'Client {',
    `  Name = ${baculaString(opts.client)}`,
    `  Address = ${opts.address}`,
    `  FDPort = ${opts.fdPort ?? 9102}`,
    `  Catalog = ${baculaString(opts.catalog ?? 'MyCatalog')}`,
    `  Password = ${baculaString(opts.password)}`,
    '  File Retention = 60 days',
    '  Job Retention = 6 months',
    '  AutoPrune = yes',
    '}',
  ].join('\n') + '\n';
}

/** The fragment an admin appends to bacula-dir.conf (the Client resource only with --address: it holds the FD password). */
export function renderBaculaConfig(opts: BaculaConfigOptions): string {
  const { before, after, paths } = baculaHookCommands(opts);
  const header = [
    `# apiscp-backup: job ${opts.job} for client ${opts.client}.`,
    '# Generated; the FileSet lists ApisCP sites on the client at job time, so new sites need no edit here.',
    '',
  ].join('\n');
  const listCommand = opts.fileList === 'cli' ? paths : undefined;
  return header + renderBaculaFileSet({ ...opts, listCommand }) + '\n' + renderBaculaJob({ ...opts, before, after });
}
