/**
 * A real terminal for the progress tests: the BUILT CLI in a tmux pane (120x40) of a tmux server
 * of our own, its screen read with capture-pane, its exit code from a file.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, waitFor, type Sandbox } from './sandbox.js';

/** PROGRESS_CAPTURES=DIR keeps the screens the tests saw (for docs/reporting.md and the issue's note). */
export function keep(name: string, screen: string): void {
  const dir = process.env.PROGRESS_CAPTURES;
  if (dir) writeFileSync(join(dir, `${name}.txt`), screen);
}

const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** A tmux server of our own (its own socket), so nothing of the machine's tmux is touched. */
export class Terminal {
  private readonly socket = `apiscp-progress-${process.pid}-${randomBytes(3).toString('hex')}`;
  private readonly session = 'cli';
  private readonly marker = join('/tmp', `${this.socket}.exit`);

  /** `env` is the whole environment of the command (plus TERM, which tmux sets). */
  start(args: readonly string[], env: Record<string, string | undefined>): void {
    const vars = Object.entries(env).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${q(v!)}`);
    // The exit code goes to a file; the pane stays open after the command so its last screen can be read.
    const line = `env -i ${vars.join(' ')} TERM=xterm-256color ${q(process.execPath)} ${q(CLI)} ${args.map(q).join(' ')}; echo $? > ${q(this.marker)}`;
    execFileSync('tmux', ['-L', this.socket, '-f', '/dev/null', 'new-session', '-d', '-x', '120', '-y', '40', '-s', this.session, 'bash', '--norc', '--noprofile', '-c', `${line}; sleep 600`]);
  }

  /** The screen as text (lines the terminal wrapped joined again: -J); with escapes, the colours as the terminal got them. */
  capture(escapes = false): string {
    return execFileSync('tmux', ['-L', this.socket, 'capture-pane', '-p', '-J', ...(escapes ? ['-e'] : []), '-t', this.session], { encoding: 'utf8' });
  }

  exitCode(): number | undefined {
    // Not there until the command has ended; seen between the shell's creating and writing it, empty.
    if (!existsSync(this.marker)) return undefined;
    const text = readFileSync(this.marker, 'utf8').trim();
    return text ? Number(text) : undefined;
  }

  kill(): void {
    try {
      execFileSync('tmux', ['-L', this.socket, 'kill-server'], { stdio: 'ignore' });
    } catch {
      /* already gone */
    }
    execFileSync('rm', ['-f', this.marker]);
  }
}

/** The sandbox's environment as the CLI gets it, with PATH as cron has it. */
export function envOf(sb: Sandbox, extra: Record<string, string> = {}): Record<string, string | undefined> {
  return { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ...sb.env, ...extra };
}

/**
 * Run the CLI in a terminal, reading the screen every `everyMs` until it exits: every screen
 * seen (with escapes when `escapes`), and the last one.
 */
export async function watchInTerminal(args: readonly string[], env: Record<string, string | undefined>, options: { timeoutMs?: number; everyMs?: number; escapes?: boolean } = {}): Promise<{ code: number; screens: string[]; end: string }> {
  const term = new Terminal();
  try {
    term.start(args, env);
    const screens: string[] = [];
    const code = await waitFor(`${args.join(' ')} to end`, () => {
      screens.push(term.capture(options.escapes));
      return term.exitCode();
    }, options.timeoutMs ?? 150_000, options.everyMs ?? 50);
    return { code, screens, end: term.capture(options.escapes) };
  } finally {
    term.kill();
  }
}

/** A screen's lines, trailing blanks and empty lines gone. */
export function screenLines(screen: string): string[] {
  return screen.split('\n').map((l) => l.trimEnd()).filter(Boolean);
}
