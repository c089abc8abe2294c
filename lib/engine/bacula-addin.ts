import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../errors.js';
import { baculaHookArgs } from './bacula.js';

/**
 * The ApisCP Bacula add-in (apisnetworks/apiscp-bacula) makes one director back up a fleet:
 * `conf.d/bacula-dir.sh`, included with `@|` from the RPM-owned bacula-dir-apnscp.conf, expands
 * the template `servers/base.conf` into a Client and a Job `<name>-Backup` for every
 * `local.d/servers/<slot>/<name>.conf`. The template is looked up in local.d/ before conf.d/, so
 * `local.d/servers/base.conf` — the installed template plus our RunScript pair inside its Job
 * resource — makes every server's job run our hook on its own client and survives RPM upgrades.
 *
 * Everything here is pure text in, text out (the CLI reads and writes the files), so a fleet
 * tool can render the same file for any director.
 */

export type BaculaLayout = 'addin' | 'stock' | 'none';

/** Where the add-in's files live below a Bacula configuration directory (/etc/bacula). */
export function addinPaths(etc: string): { generator: string; installedTemplate: string; localTemplate: string; servers: string; custom: string } {
  return {
    generator: join(etc, 'conf.d', 'bacula-dir.sh'),
    installedTemplate: join(etc, 'conf.d', 'servers', 'base.conf'),
    localTemplate: join(etc, 'local.d', 'servers', 'base.conf'),
    servers: join(etc, 'local.d', 'servers'),
    custom: join(etc, 'local.d', 'bacula-dir-custom.conf'),
  };
}

/** The add-in when its generator and template are there; stock when only bacula-dir.conf is. */
export function detectBaculaLayout(etc: string): BaculaLayout {
  const p = addinPaths(etc);
  if (existsSync(p.generator) && existsSync(p.installedTemplate)) return 'addin';
  return existsSync(join(etc, 'bacula-dir.conf')) ? 'stock' : 'none';
}

/** The installed apiscp-backup on every client: one path, whatever node each server has (lib/install/wrapper). */
export const CLIENT_WRAPPER = '/usr/local/sbin/apiscp-backup';

const BEGIN = '# apiscp-backup hooks: begin (written by `apiscp-backup bacula config --write`; edit outside these lines)';
const END = '# apiscp-backup hooks: end';
const MADE_FROM = '# apiscp-backup: made from conf.d/servers/base.conf sha256 ';

export function templateHash(installedTemplate: string): string {
  return createHash('sha256').update(installedTemplate).digest('hex');
}

/**
 * One word of a Command in the add-in's template. The generator hands the template to
 * `awk -v`, which turns `\"` into `"`: a Bacula string there cannot contain an escaped quote, so
 * words are quoted with '…' (Bacula's own argv splitting understands them) and `\` is refused.
 * `%` would meet the generator's %NAME%-style placeholders and Bacula's job codes: refused too.
 */
function addinWord(word: string): string {
  if (/[\\"%\n]/.test(word)) throw new ConfigError(`cannot pass ${JSON.stringify(word)} through the add-in's generator (no \\, ", % or newlines)`, undefined);
  if (word !== '' && !/[\s']/.test(word)) return word;
  if (word.includes("'")) throw new ConfigError(`cannot quote ${JSON.stringify(word)} for the add-in's generator`, undefined);
  return `'${word}'`;
}

/** The Command values (inside "…") of our two RunScripts, for the add-in's template. */
export function addinHookCommands(opts: { wrapper?: string; configFile?: string } = {}): { before: string; after: string } {
  const wrapper = opts.wrapper ?? CLIENT_WRAPPER;
  if (!wrapper.startsWith('/')) throw new ConfigError(`Bacula runs hooks without a shell or PATH: ${wrapper} must be an absolute path`, undefined);
  const args = baculaHookArgs({ configFile: opts.configFile });
  // Job codes pass as they are; %e ("OK -- with warnings") is one word in single quotes.
  const line = (argv: string[]): string => [wrapper, ...argv].map((a) => (a === '%e' ? "'%e'" : /^%[a-zA-Z]$/.test(a) ? a : addinWord(a))).join(' ');
  return { before: line(args.before), after: line(args.after) };
}

export interface AddinBaseConfInput {
  /** The installed template, conf.d/servers/base.conf, as it is now. */
  readonly installedTemplate: string;
  /** The current local.d/servers/base.conf when there is one: its own edits are kept. */
  readonly localTemplate?: string;
  /** From addinHookCommands. */
  readonly hooks: { readonly before: string; readonly after: string };
}

/**
 * local.d/servers/base.conf: the local template (or the installed one when there is none yet),
 * our previous block removed, our RunScript pair inserted before the Job resource's closing
 * brace, and a comment naming the installed template it was made from. The generator drops
 * comment lines, so the markers cost nothing. Rendering its own output again gives the same text.
 */
export function renderAddinBaseConf(input: AddinBaseConfInput): string {
  const base = stripOurs(input.localTemplate ?? input.installedTemplate);
  const lines = base.replace(/\n+$/, '').split('\n');
  const close = jobClosingLine(lines);
  const q = (v: string): string => `"${v}"`;
  const block = [
    `  ${BEGIN}`,
    '  RunScript {',
    '    RunsWhen = Before',
    '    RunsOnClient = yes',
    '    FailJobOnError = yes',
    `    Command = ${q(input.hooks.before)}`,
    '  }',
    '  RunScript {',
    '    RunsWhen = After',
    '    RunsOnClient = yes',
    '    RunsOnSuccess = yes',
    '    RunsOnFailure = yes',
    '    FailJobOnError = no',
    `    Command = ${q(input.hooks.after)}`,
    '  }',
    `  ${END}`,
  ];
  const out = [`${MADE_FROM}${templateHash(input.installedTemplate)}`, ...lines.slice(0, close), ...block, ...lines.slice(close)];
  return out.join('\n') + '\n';
}

/** The installed template's hash recorded in a local.d/servers/base.conf we wrote (undefined: not ours). */
export function madeFromHash(localTemplate: string): string | undefined {
  const line = localTemplate.split('\n').find((l) => l.startsWith(MADE_FROM));
  return line?.slice(MADE_FROM.length).trim();
}

/** Whether the template carries our hooks (and an admin's own backup_dbs.php RunScript, which would export twice). */
export function inspectAddinTemplate(text: string): { ours: boolean; panelExportRunScript: boolean } {
  const active = text.split('\n').filter((l) => !/^\s*#/.test(l)).join('\n');
  return { ours: text.includes(BEGIN), panelExportRunScript: /backup_dbs\.php/.test(active) };
}

function stripOurs(text: string): string {
  const lines = text.split('\n').filter((l) => !l.startsWith(MADE_FROM));
  const begin = lines.findIndex((l) => l.trim() === BEGIN);
  const end = lines.findIndex((l) => l.trim() === END);
  if (begin >= 0 && end > begin) lines.splice(begin, end - begin + 1);
  return lines.join('\n');
}

/**
 * The line index of the `}` closing the first Job resource (not the Client's: the add-in's own
 * EXTRA insertion stops at the first "Job" word, which sits inside the Client resource).
 * Braces inside quoted strings and comments do not count.
 */
function jobClosingLine(lines: string[]): number {
  const start = lines.findIndex((l) => /^\s*Job\s*\{/i.test(l));
  if (start < 0) throw new ConfigError('the add-in template has no Job { … } resource to put the hooks in', undefined);
  let depth = 0;
  for (let i = start; i < lines.length; i++) {
    const code = lines[i]!.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/#.*$/, '');
    for (const ch of code) {
      if (ch === '{') depth++;
      else if (ch === '}' && --depth === 0) {
        if (code.trim() !== '}') throw new ConfigError('the Job resource in the add-in template must end with `}` on its own line', undefined);
        return i;
      }
    }
  }
  throw new ConfigError('the Job resource in the add-in template is not closed', undefined);
}

/**
 * For `status` on the director: a local.d/servers/base.conf we made from an older installed
 * template (an RPM upgrade changed conf.d/servers/base.conf) hides the new template from every
 * server. undefined when there is no add-in, no file of ours, or it is current.
 */
export function addinTemplateDrift(etc: string, read: (file: string) => string | undefined): string | undefined {
  const p = addinPaths(etc);
  const installed = read(p.installedTemplate);
  const local = read(p.localTemplate);
  if (installed === undefined || local === undefined) return undefined;
  const made = madeFromHash(local);
  if (made === undefined || made === templateHash(installed)) return undefined;
  return `${p.localTemplate} was made from an older ${p.installedTemplate} (the add-in was upgraded): compare them, then run \`apiscp-backup bacula config --write\` again`;
}
