import { readFileSync } from 'node:fs';
import type { Config } from '../config/schema.js';
import { durationMs } from '../config/schema.js';
import { CommandError, PanelError, tail } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import type { Logger } from '../log.js';
import { cmd, describe } from '../proc/command.js';
import { anyExitCode } from '../proc/exit-status.js';
import { run } from '../proc/run.js';
import { isExecutable, which } from '../proc/which.js';

/**
 * ApisCP's command-line bridge. `cpcmd` is only an alias in root's ~/.bashrc
 * (`apnscp_php ${APNSCP_HOME}/bin/cmd`), so under cron the panel's own scripts call
 * `<APNSCP_HOME>/bin/cmd`: we look in the same places, in this order.
 */
export const DEFAULT_APNSCP_HOME = '/usr/local/apnscp';
export const PANEL_CMD = `${DEFAULT_APNSCP_HOME}/bin/cmd`;
/** Where the panel records its install location (APNSCP_HOME=…), read by its shell helpers. */
export const APNSCP_SYSCONFIG = '/etc/sysconfig/apnscp';

/**
 * The panel's home: $APNSCP_HOME, else APNSCP_HOME= in /etc/sysconfig/apnscp (a shell
 * assignment, maybe quoted), else /usr/local/apnscp. Never throws: no file means the default.
 */
export function apnscpHome(env: NodeJS.ProcessEnv = process.env, sysconfig: string = APNSCP_SYSCONFIG): string {
  if (env.APNSCP_HOME?.startsWith('/')) return env.APNSCP_HOME.replace(/\/+$/, '');
  let text = '';
  try {
    text = readFileSync(sysconfig, 'utf8');
  } catch {
    return DEFAULT_APNSCP_HOME;
  }
  const m = /^\s*(?:export\s+)?APNSCP_HOME\s*=\s*(?:"([^"]*)"|'([^']*)'|(\S+))/m.exec(text);
  const value = (m?.[1] ?? m?.[2] ?? m?.[3] ?? '').replace(/\/+$/, '');
  return value.startsWith('/') ? value : DEFAULT_APNSCP_HOME;
}

/**
 * Find cpcmd: `panel.cpcmd` when set to a path, else $CPCMD, `cpcmd` on PATH,
 * `<APNSCP_HOME>/bin/cmd`, then PANEL_CMD.
 * Returns undefined when auto-discovery finds nothing. A path the admin named explicitly
 * (panel.cpcmd or $CPCMD) that is not executable throws: silently skipping it would hide a typo.
 */
export function locateCpcmd(config: Config, env: NodeJS.ProcessEnv = process.env, sysconfig: string = APNSCP_SYSCONFIG): string | undefined {
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
  const fromPath = which('cpcmd', env.PATH);
  if (fromPath) return fromPath;
  const candidates = [`${apnscpHome(env, sysconfig)}/bin/cmd`, PANEL_CMD];
  return candidates.find((c) => isExecutable(c));
}

export interface PanelOptions {
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  log?: Logger;
  /** /etc/sysconfig/apnscp by default (tests point it elsewhere). */
  sysconfig?: string;
}

/**
 * The panel client for this host, or undefined when there is no panel (`panel.enabled: false`,
 * or `auto` and no cpcmd found). `panel.enabled: true` without cpcmd is an error.
 */
export function openPanel(config: Config, options: PanelOptions = {}): Cpcmd | undefined {
  if (config.panel.enabled === false) return undefined;
  const path = locateCpcmd(config, options.env, options.sysconfig);
  if (!path) {
    if (config.panel.enabled === true) {
      throw new PanelError(`panel.enabled is true but cpcmd was not found (looked at $CPCMD, cpcmd on PATH, $APNSCP_HOME/bin/cmd from ${APNSCP_SYSCONFIG}, ${PANEL_CMD})`);
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
      result = await run(cmd(this.path, argv), { timeoutMs: this.timeoutMs, signal, exitClass: anyExitCode /* cpcmd may print its error block on stdout, which CommandError (stderr tail) would lose */, failureExitCode: ExitCode.PANEL });
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
    // The reporter may write to either stream (unconfirmed): an ERROR on one beats an OK on the other.
    const blocks = [findErrorBlock(result.stderr), findErrorBlock(result.stdout)].filter((b): b is ErrorBlock => b !== undefined);
    const block = blocks.find((b) => b.failed) ?? blocks[0];
    if (result.exitCode !== 0 || block?.failed) {
      const line = block?.message ?? lastLine(result.stderr) ?? lastLine(result.stdout) ?? '';
      throw new PanelError(`${shown} failed (exit ${result.exitCode})${line ? `: ${line}` : ''}`, {
        command: shown,
        exitCode: result.exitCode,
        error: line,
        stderrTail: tail(result.stderr),
      });
    }
    // OK/INFO blocks are chatter; a WARNING the panel printed is worth the log.
    for (const m of blocks.flatMap((b) => b.messages).filter((m) => m.startsWith('WARNING'))) this.log?.warn(`${shown}: ${m}`);
    return stripNoise(result.stdout);
  }
}

const DASH_LINE = /^-{10,}\s*$/;
/**
 * A reporter message. Live lines pad the level (`ERROR   : …`, `INFO    : …`); the summary's copy
 * does not (`ERROR: …`). Both are the same message, normalised to `LEVEL: text`.
 */
const MESSAGE_LINE = /^(FATAL|ERROR|WARNING|DEPRECATED|INFO|DEBUG)\s*:\s?(.*)$/;
const SERIOUS = new Set(['ERROR', 'FATAL']);

export interface ErrorBlock {
  readonly level: string;
  /** The first ERROR/FATAL message (or the first message at all): what the admin needs to read. */
  readonly message: string;
  readonly failed: boolean;
  /** Every message, normalised (`ERROR: …`), live lines and summary copies deduplicated. */
  readonly messages: readonly string[];
}

/**
 * ApisCP's error reporter, as its docs print it (DEBUGGING.md, Hooks.md, WebApps.md): live lines
 * while the command runs, then a dashed block `MESSAGE SUMMARY` / `Reporter level: X`, and the
 * messages either inside the block or after its closing dashes, then the value (OK/INFO only).
 * An ERROR live line without a summary counts too. The block may come with exit 0.
 */
export function findErrorBlock(text: string): ErrorBlock | undefined {
  const lines = text.split(/\r?\n/).map((l) => l.trim());
  const start = lines.indexOf('MESSAGE SUMMARY');
  let level = '';
  if (start >= 0) {
    const lv = /^Reporter level:\s*(\w+)/.exec(lines[start + 1] ?? '');
    if (lv) level = lv[1]!.toUpperCase();
  }
  const messages: { level: string; text: string }[] = [];
  for (const line of lines) {
    const m = MESSAGE_LINE.exec(line);
    if (!m) continue;
    const normal = `${m[1]}: ${m[2]!.trim()}`;
    if (!messages.some((x) => x.text === normal)) messages.push({ level: m[1]!, text: normal });
  }
  if (start < 0 && !messages.some((m) => SERIOUS.has(m.level))) return undefined;
  const serious = messages.find((m) => SERIOUS.has(m.level));
  const failed = serious !== undefined || SERIOUS.has(level);
  return {
    level: level || (serious ? serious.level : ''),
    message: (serious ?? messages[0])?.text ?? `Reporter level: ${level || 'unknown'}`,
    failed,
    messages: messages.map((m) => m.text),
  };
}

/**
 * The command's value: without the summary block (its dashes, title, level line), reporter
 * messages wherever they stand (live, inside or after the block) and PHP notices.
 */
export function stripNoise(text: string): string {
  const lines = text.split(/\r?\n/);
  const drop = new Set<number>();
  lines.forEach((line, i) => {
    if (line.trim() !== 'MESSAGE SUMMARY') return;
    if (i > 0 && DASH_LINE.test(lines[i - 1]!)) drop.add(i - 1);
    drop.add(i);
    // Up to and including the closing dashes (the messages inside are dropped below anyway).
    for (let j = i + 1; j < lines.length; j++) {
      drop.add(j);
      if (DASH_LINE.test(lines[j]!)) break;
    }
  });
  const out = lines.filter((line, i) => {
    if (drop.has(i)) return false;
    const t = line.trim();
    if (MESSAGE_LINE.test(t)) return false;
    return !/^(PHP )?(Warning|Notice|Deprecated|Strict Standards):\s/i.test(t);
  });
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
