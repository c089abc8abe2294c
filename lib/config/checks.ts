import { accessSync, constants, lstatSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { ConfigError } from '../errors.js';
import { whichSystem } from '../proc/which.js';
import type { LoadedConfig } from './load.js';
import type { EngineName } from './schema.js';

/**
 * What a run will need, checked from the configuration alone (no server contacted): the engine's
 * keys, the secret files, the directories, the tools. `config validate` lists every problem at
 * once; `dump`, `run`, `nightly` and the pre-backup hook refuse to start on the run-time subset
 * (RUN_TIME_CHECKS) with the same words, instead of failing later or not at all.
 */
export interface ConfigProblem {
  /** The dotted key the problem is about (its line is looked up in the file). */
  readonly key: string;
  readonly problem: string;
  /** What to do about it, as a command or an edit. */
  readonly fix: string;
  /** Whose line to show when `key` is not in the file at all (a required key: the `engine` line). */
  readonly at?: string;
}

export type ConfigCheck = (loaded: LoadedConfig) => ConfigProblem[];

const problem = (key: string, text: string, fix: string): ConfigProblem => ({ key, problem: text, fix });

function required(key: string, example: string): ConfigCheck {
  return (loaded) => (valueAt(loaded, key) === undefined ? [{ ...problem(key, `not set: engine ${loaded.config.engine} cannot run without it`, `set ${key}, e.g. ${example}`), at: 'engine' }] : []);
}

function valueAt(loaded: LoadedConfig, key: string): unknown {
  return key.split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), loaded.config);
}

/**
 * Each engine's checks. Other checks (a remote repository's keys, say) are added by pushing a
 * function onto the engine's list: validate and the run-time check both read these lists.
 */
export const ENGINE_CHECKS: Record<EngineName, ConfigCheck[]> = {
  none: [],
  bacula: [],
  duplicity: [required('duplicity.target', 'file:///backup/duplicity or sftp://host/path')],
  restic: [required('restic.repository', '/backup/restic or sftp:host:/path'), required('restic.password_file', '/etc/apiscp-backup/restic.password (0600, root)')],
  borg: [required('borg.repository', '/backup/borg or ssh://host/./repo')],
};

/** Every key naming a file with a secret in it (a password, a passphrase, a private key). */
export const SECRET_FILE_KEYS = ['databases.mysql.password_file', 'databases.postgresql.password_file', 'duplicity.passphrase_file', 'restic.password_file', 'restic.tls_client_cert', 'borg.passphrase_file', 'borg.ssh_key'] as const;

/** Whose a secret file must be: root's, or (a developer's run) the user we run as. */
const owner = (): number => process.getuid?.() ?? 0;

/** A secret file exists, is a regular file, is ours and nobody else's to read or write. */
export function secretFileProblems(key: string, file: string): ConfigProblem[] {
  let st;
  try {
    st = lstatSync(file);
  } catch (err) {
    return [problem(key, `${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`, `create it (install -m 600 -o root /dev/null ${file}, then write the secret into it) or correct the path`)];
  }
  if (!st.isFile()) return [problem(key, `${file}: not a regular file (${st.isSymbolicLink() ? 'a symlink' : st.isDirectory() ? 'a directory' : 'a special file'})`, 'point it at the file itself')];
  const out: ConfigProblem[] = [];
  const uid = owner();
  if (st.uid !== uid) out.push(problem(key, `${file}: owned by uid ${st.uid}, not ${uid === 0 ? 'root' : `uid ${uid}`}: its owner can change the secret`, `chown ${uid === 0 ? 'root' : uid} ${file}`));
  const mode = st.mode & 0o777;
  if (mode & 0o077) out.push(problem(key, `${file}: mode ${mode.toString(8).padStart(4, '0')}: ${mode & 0o044 ? 'other users can read the secret' : 'other users can change it'}`, `chmod 600 ${file}`));
  return out;
}

function secretFiles(loaded: LoadedConfig): ConfigProblem[] {
  return SECRET_FILE_KEYS.flatMap((key) => {
    if (!secretInUse(loaded, key)) return [];
    const file = valueAt(loaded, key);
    return typeof file === 'string' ? secretFileProblems(key, file) : [];
  });
}

/** An engine's secret matters only with that engine; a database's unless it is switched off. */
function secretInUse(loaded: LoadedConfig, key: (typeof SECRET_FILE_KEYS)[number]): boolean {
  const c = loaded.config;
  if (key === 'databases.mysql.password_file') return c.databases.mysql.enabled !== false;
  if (key === 'databases.postgresql.password_file') return c.databases.postgresql.enabled !== false;
  return key.startsWith(`${c.engine}.`);
}

/** The directory exists and we can write it, or its nearest existing parent lets us create it. */
export function creatableProblem(key: string, dir: string): ConfigProblem | undefined {
  let at = dir;
  for (;;) {
    let st;
    try {
      st = statSync(at);
    } catch (err) {
      if (!['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '') || dirname(at) === at) return problem(key, `${dir}: ${(err as Error).message}`, 'choose another directory');
      at = dirname(at);
      continue;
    }
    if (!st.isDirectory()) return problem(key, `${dir}: ${at} is not a directory`, 'choose another directory');
    try {
      accessSync(at, constants.W_OK | constants.X_OK);
    } catch {
      return problem(key, `${dir}: ${at === dir ? 'not writable' : `cannot be created: ${at} is not writable`}`, at === dir ? `chmod u+w ${dir}` : `mkdir -p ${dir} as root, or choose another directory`);
    }
    return undefined;
  }
}

function directories(loaded: LoadedConfig): ConfigProblem[] {
  const { dumpsDir, stateDir } = loaded.paths;
  return [creatableProblem('dumps.dir', dumpsDir), creatableProblem('state.dir', stateDir)].filter((p): p is ConfigProblem => p !== undefined);
}

/** A tool and where it comes from: Debian's package, then RHEL's. */
interface Tool {
  readonly names: readonly string[];
  readonly debian: string;
  readonly rhel: string;
}

function toolProblem(key: string, why: string, tool: Tool): ConfigProblem[] {
  if (tool.names.some((n) => whichSystem(n))) return [];
  return [problem(key, `${why} needs ${tool.names.join(' or ')}, not installed`, `apt-get install ${tool.debian} / dnf install ${tool.rhel}`)];
}

/** A database kind is dumped when switched on, or on `auto` when its server is installed here. */
function kindInUse(enabled: boolean | 'auto', serverBinaries: readonly string[]): boolean {
  return enabled === true || (enabled === 'auto' && serverBinaries.some((b) => whichSystem(b)));
}

function tools(loaded: LoadedConfig): ConfigProblem[] {
  const c = loaded.config;
  const out: ConfigProblem[] = [];
  if (c.databases.method !== 'apnscp') {
    if (kindInUse(c.databases.mysql.enabled, ['mariadbd', 'mysqld'])) out.push(...toolProblem('databases.mysql.enabled', 'dumping MySQL/MariaDB', { names: ['mariadb-dump', 'mysqldump'], debian: 'mariadb-client', rhel: 'mariadb' }));
    if (kindInUse(c.databases.postgresql.enabled, ['postgres'])) out.push(...toolProblem('databases.postgresql.enabled', 'dumping PostgreSQL', { names: ['pg_dump'], debian: 'postgresql-client', rhel: 'postgresql' }));
  }
  if (c.dumps.compression === 'zstd') out.push(...toolProblem('dumps.compression', 'compression zstd', { names: ['zstd'], debian: 'zstd', rhel: 'zstd' }));
  if (c.dumps.compression === 'gzip') out.push(...toolProblem('dumps.compression', 'compression gzip', { names: ['gzip'], debian: 'gzip', rhel: 'gzip' }));
  const engineTool: Partial<Record<EngineName, Tool>> = {
    restic: { names: ['restic'], debian: 'restic', rhel: 'restic (EPEL)' },
    borg: { names: ['borg'], debian: 'borgbackup', rhel: 'borgbackup (EPEL)' },
    duplicity: { names: ['duplicity'], debian: 'duplicity', rhel: 'duplicity (EPEL)' },
  };
  const t = engineTool[c.engine];
  if (t) out.push(...toolProblem('engine', `engine ${c.engine}`, t));
  // Engines that lose ACLs get them from the sidecar pre-backup writes with getfacl/getfattr.
  if (c.engine === 'duplicity' || c.engine === 'bacula') {
    out.push(...toolProblem('engine', `engine ${c.engine} (the ACL sidecar)`, { names: ['getfacl'], debian: 'acl', rhel: 'acl' }));
    out.push(...toolProblem('engine', `engine ${c.engine} (the ACL sidecar)`, { names: ['getfattr'], debian: 'attr', rhel: 'attr' }));
  }
  return out;
}

/** What `config validate` checks besides the engine's own list. */
export const COMMON_CHECKS: ConfigCheck[] = [secretFiles, directories, tools];

/** What a job checks before it takes the lock: a missing engine key or a readable secret stops it. */
export const RUN_TIME_CHECKS: ConfigCheck[] = [secretFiles];

export function checkConfig(loaded: LoadedConfig, engine: EngineName = loaded.config.engine, common: readonly ConfigCheck[] = COMMON_CHECKS): ConfigProblem[] {
  return [...ENGINE_CHECKS[engine], ...common].flatMap((check) => check(loaded));
}

/** One line per problem: `file:line: key: problem (fix: …)`, in file order. */
export function formatProblems(loaded: LoadedConfig, problems: readonly ConfigProblem[]): string[] {
  const where = loaded.file ?? 'config (no file, defaults)';
  return problems
    .map((p) => ({ p, line: lineOf(loaded, p) }))
    .sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity))
    .map(({ p, line }) => `${where}${line ? `:${line}` : ''}: ${p.key}: ${p.problem} (fix: ${p.fix})`);
}

function lineOf(loaded: LoadedConfig, p: ConfigProblem): number | undefined {
  return loaded.lineOf?.(p.key) ?? (p.at ? loaded.lineOf?.(p.at) : undefined);
}

/** Refuse to start a job the configuration cannot carry: every problem, one ConfigError (exit 2). */
export function requireRunnable(loaded: LoadedConfig, engine: EngineName): void {
  const problems = checkConfig(loaded, engine, RUN_TIME_CHECKS);
  if (problems.length === 0) return;
  const first = problems[0]!;
  throw new ConfigError(formatProblems(loaded, problems).join('\n'), loaded.file, first.key, lineOf(loaded, first));
}
