/**
 * A command is a plain argv array plus the environment it needs. Commands are data so tests can
 * assert them exactly and so nothing ever goes through a shell.
 */
export interface Command {
  readonly file: string;
  readonly args: readonly string[];
  /** Extra environment on top of the parent's (secrets go here or in files, never in args). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** false: the command sees only `env` (cron's bare environment in the demo and tests). */
  readonly inheritEnv?: boolean;
  readonly cwd?: string;
  /** Run as another user (PostgreSQL peer authentication as `postgres`). */
  readonly uid?: number;
  readonly gid?: number;
}

export function cmd(file: string, args: readonly string[] = [], extra: Omit<Command, 'file' | 'args'> = {}): Command {
  return { file, args, ...extra };
}

const SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** Shell-style quoting, only for human-readable messages and logs. */
export function quote(arg: string): string {
  if (arg !== '' && SAFE.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

export function redact(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const s of secrets) {
    if (s && s.length >= 3) out = out.split(s).join('***');
  }
  return out;
}

/** `mariadb-dump --single-transaction 'my db'`: what error messages and logs show. */
export function describe(command: Command, secrets: readonly string[] = []): string {
  return redact([command.file, ...command.args].map(quote).join(' '), secrets);
}

/**
 * The line of a tool's stderr that says what went wrong: the last one that looks like an error
 * (libpq ends with a hint after its FATAL line), else the last line.
 */
export function errorLine(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  return [...lines].reverse().find((l) => /\b(error|fatal|failed|denied|cannot|could not)\b/i.test(l)) ?? lines[lines.length - 1] ?? '';
}
