import type { Config } from '../config/schema.js';
import { durationMs } from '../config/schema.js';
import { CommandError, PanelError, tail } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import type { Logger } from '../log.js';
import { cmd, describe } from '../run/command.js';
import { run } from '../run/run.js';
import { isExecutable, which } from '../run/which.js';

/**
 * ApisCP's command-line bridge. `cpcmd` is only an alias in root's ~/.bashrc, so under cron the
 * panel's own scripts call /usr/local/apnscp/bin/cmd: we look in the same places, in this order.
 */
export const PANEL_CMD = '/usr/local/apnscp/bin/cmd';

/**
 * Find cpcmd: `panel.cpcmd` when set to a path, else $CPCMD, `cpcmd` on PATH, then PANEL_CMD.
 * Returns undefined when auto-discovery finds nothing. A path the admin named explicitly
 * (panel.cpcmd or $CPCMD) that is not executable throws: silently skipping it would hide a typo.
 */
export function locateCpcmd(config: Config, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const configured = config.panel.cpcmd;
  if (configured !== 'auto') {
    const found = which(configured, env.PATH);
    if (!found) throw new PanelError(`cpcmd not found or not executable: ${configured} (panel.cpcmd)`, { cpcmd: configured });
    return found;
  }
  if (env.CPCMD) {
    const found = which(env.CPCMD, env.PATH);
    if (!found) throw new PanelError(`cpcmd not found or not executable: ${env.CPCMD} ($CPCMD)`, { cpcmd: env.CPCMD });
    return found;
  }
  return which('cpcmd', env.PATH) ?? (isExecutable(PANEL_CMD) ? PANEL_CMD : undefined);
}

export interface PanelOptions {
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  log?: Logger;
}

/**
 * The panel client for this host, or undefined when there is no panel (`panel.enabled: false`,
 * or `auto` and no cpcmd found). `panel.enabled: true` without cpcmd is an error.
 */
export function openPanel(config: Config, options: PanelOptions = {}): Cpcmd | undefined {
  if (config.panel.enabled === false) return undefined;
  const path = locateCpcmd(config, options.env);
  if (!path) {
    if (config.panel.enabled === true) {
      throw new PanelError(`panel.enabled is true but cpcmd was not found (looked at $CPCMD, cpcmd on PATH, ${PANEL_CMD})`);
    }
    return undefined;
  }
  return new Cpcmd(path, { timeoutMs: durationMs(config.panel.timeout), signal: options.signal, log: options.log });
}

/** Like openPanel, for commands that make no sense without a panel (scope status/disable/restore). */
export function requirePanel(config: Config, options: PanelOptions = {}): Cpcmd {
  const panel = openPanel(config, options);
  if (!panel) {
    const why = config.panel.enabled === false ? 'panel.enabled is false' : `cpcmd was not found ($CPCMD, PATH, ${PANEL_CMD})`;
    throw new PanelError(`there is no ApisCP panel on this host: ${why}`);
  }
  return panel;
}

export interface CallOptions {
  /** `-d siteN`: run in a site's context. */
  site?: string;
  signal?: AbortSignal;
}

// Every exit code is handed back to us: cpcmd may print its error block on stdout, which
// run()'s CommandError (stderr tail only) would lose. Timeouts and signals still throw.
const ALL_EXIT_CODES = Array.from({ length: 255 }, (_, i) => i + 1);

export class Cpcmd {
  readonly timeoutMs: number;
  readonly signal: AbortSignal | undefined;
  readonly log: Logger | undefined;

  constructor(
    readonly path: string,
    options: { timeoutMs?: number; signal?: AbortSignal; log?: Logger } = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 120_000;
    this.signal = options.signal;
    this.log = options.log;
  }

  /** Run `cpcmd [-d site] args…` and return its output without PHP noise and error blocks. */
  async call(args: readonly string[], options: CallOptions = {}): Promise<string> {
    return this.exec(args, options);
  }

  /** `-o json` and parse, tolerating PHP warnings before the value and trailing whitespace. */
  async json<T = unknown>(args: readonly string[], options: CallOptions = {}): Promise<T> {
    const out = await this.exec(['-o', 'json', ...args], options);
    try {
      return parseJsonOutput(out) as T;
    } catch {
      throw new PanelError(`${this.show(args, options)}: unexpected output (not JSON): ${JSON.stringify(tail(out, 200))}`, { output: tail(out) });
    }
  }

  /** A boolean value (a scope): accepts true/false, PHP's 1/empty and 0. */
  async bool(args: readonly string[], options: CallOptions = {}): Promise<boolean> {
    const out = await this.exec(['-o', 'json', ...args], options);
    const value = parseBoolean(out);
    if (value === undefined) {
      throw new PanelError(`${this.show(args, options)}: expected a boolean, got ${JSON.stringify(tail(out, 200))}`, { output: tail(out) });
    }
    return value;
  }

  private show(args: readonly string[], options: CallOptions): string {
    return describe(cmd('cpcmd', [...(options.site ? ['-d', options.site] : []), ...args]));
  }

  private async exec(args: readonly string[], options: CallOptions): Promise<string> {
    const argv = [...(options.site ? ['-d', options.site] : []), ...args];
    const shown = this.show(args, options);
    const signal = options.signal ?? this.signal;
    this.log?.debug('cpcmd', { argv });
    let result;
    try {
      result = await run(cmd(this.path, argv), { timeoutMs: this.timeoutMs, signal, okExitCodes: ALL_EXIT_CODES, failureExitCode: ExitCode.PANEL });
    } catch (err) {
      if (err instanceof CommandError) {
        throw new PanelError(`${shown}: ${err.message.slice(err.command.length + 2)}`, {
          command: shown,
          exitCode: err.exitCodeOfCommand,
          timedOut: err.timedOut,
          stderrTail: err.stderrTail,
        });
      }
      throw err;
    }
    const block = findErrorBlock(result.stdout) ?? findErrorBlock(result.stderr);
    if (result.exitCode !== 0 || block?.failed) {
      const line = block?.message ?? lastLine(result.stderr) ?? lastLine(result.stdout) ?? '';
      throw new PanelError(`${shown} failed (exit ${result.exitCode})${line ? `: ${line}` : ''}`, {
        command: shown,
        exitCode: result.exitCode,
        error: line,
        stderrTail: tail(result.stderr),
      });
    }
    if (block) this.log?.warn(`${shown}: ${block.message}`);
    return stripNoise(result.stdout);
  }
}

const DASH_LINE = /^-{10,}\s*$/;
const MESSAGE_LINE = /^(FATAL|ERROR|WARNING|DEPRECATED|INFO|DEBUG): (.*)$/;

export interface ErrorBlock {
  readonly level: string;
  /** The first ERROR/FATAL line (or the first message at all): what the admin needs to read. */
  readonly message: string;
  readonly failed: boolean;
}

/** Find ApisCP's MESSAGE SUMMARY block; it may come with exit 0, so the exit code is not enough. */
export function findErrorBlock(text: string): ErrorBlock | undefined {
  const lines = text.split(/\r?\n/).map((l) => l.trimEnd());
  const start = lines.findIndex((l) => l.trim() === 'MESSAGE SUMMARY');
  if (start < 0) return undefined;
  let level = '';
  const messages: { level: string; text: string }[] = [];
  for (const line of lines.slice(start + 1)) {
    if (DASH_LINE.test(line)) break;
    const lv = /^Reporter level:\s*(\w+)/.exec(line);
    if (lv) level = lv[1]!.toUpperCase();
    const m = MESSAGE_LINE.exec(line.trim());
    if (m) messages.push({ level: m[1]!, text: line.trim() });
  }
  const serious = messages.find((m) => m.level === 'ERROR' || m.level === 'FATAL');
  const failed = serious !== undefined || level === 'ERROR' || level === 'FATAL';
  return { level, message: (serious ?? messages[0])?.text ?? `Reporter level: ${level || 'unknown'}`, failed };
}

/** Drop PHP notices and a non-fatal MESSAGE SUMMARY block: they are not the command's value. */
export function stripNoise(text: string): string {
  const out: string[] = [];
  let inBlock = false;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (DASH_LINE.test(line) && lines[i + 1]?.trim() === 'MESSAGE SUMMARY') inBlock = true;
    else if (inBlock && DASH_LINE.test(line)) {
      inBlock = false;
      continue;
    }
    if (inBlock) continue;
    if (/^(PHP )?(Warning|Notice|Deprecated|Strict Standards):\s/i.test(line.trim())) continue;
    out.push(line);
  }
  return out.join('\n').trim();
}

/** JSON, or JSON after leading lines of noise we did not recognise (a new PHP warning format). */
export function parseJsonOutput(text: string): unknown {
  const trimmed = text.trim();
  if (trimmed === '') return null;
  try {
    return JSON.parse(trimmed);
  } catch {
    const lines = trimmed.split('\n');
    for (let i = 1; i < lines.length; i++) {
      try {
        return JSON.parse(lines.slice(i).join('\n'));
      } catch {
        /* keep dropping leading lines */
      }
    }
    throw new SyntaxError('no JSON value in output');
  }
}

/** true/1 and false/0/empty/null, as JSON or PHP's echo prints them; undefined for anything else. */
export function parseBoolean(text: string): boolean | undefined {
  const lines = text.trim().split('\n');
  const value = (lines[lines.length - 1] ?? '').trim().replace(/^"(.*)"$/, '$1').toLowerCase();
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0' || value === '' || value === 'null') return false;
  return undefined;
}

function lastLine(text: string): string | undefined {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  return lines[lines.length - 1];
}
