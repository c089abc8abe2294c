/**
 * A real terminal for the progress tests: a tmux server of our own (its own socket, 120x40), so
 * nothing of the machine's tmux is touched; the command's exit code goes to a file and the pane
 * stays open after it, so its last screen can be read. (The pattern of test/cli/progress.test.ts.)
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CLI } from './sandbox.js';

const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

export class Terminal {
  private readonly socket = `apiscp-progress-${process.pid}-${randomBytes(3).toString('hex')}`;
  private readonly session = 'cli';
  private readonly marker = join('/tmp', `${this.socket}.exit`);

  /** The built CLI with `args`; `env` is its whole environment (plus TERM, which tmux sets). */
  start(args: readonly string[], env: Record<string, string | undefined>): void {
    const vars = Object.entries(env).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${q(v!)}`);
    const line = `env -i ${vars.join(' ')} TERM=xterm-256color ${q(process.execPath)} ${q(CLI)} ${args.map(q).join(' ')}; echo $? > ${q(this.marker)}`;
    execFileSync('tmux', ['-L', this.socket, '-f', '/dev/null', 'new-session', '-d', '-x', '120', '-y', '40', '-s', this.session, 'bash', '--norc', '--noprofile', '-c', `${line}; sleep 600`]);
  }

  /** The screen as text (lines the terminal wrapped joined again: -J). */
  capture(): string {
    return execFileSync('tmux', ['-L', this.socket, 'capture-pane', '-p', '-J', '-t', this.session], { encoding: 'utf8' });
  }

  exitCode(): number | undefined {
    if (!existsSync(this.marker)) return undefined;
    const text = readFileSync(this.marker, 'utf8').trim();
    // Written by the shell: seen between its creation and its write, it is still empty.
    return text ? Number(text) : undefined;
  }

  kill(): void {
    try {
      execFileSync('tmux', ['-L', this.socket, 'kill-server'], { stdio: 'ignore' });
    } catch {
      /* already gone */
    }
    rmSync(this.marker, { force: true });
  }
}
