import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { whichSystem } from '../../lib/proc/which.js';
import { quote } from '../../lib/proc/command.js';

/**
 * Counts an engine's tool runs without touching the tool: a directory of wrappers put first on
 * PATH, each appending its argv (and, for bconsole, the commands it reads) to a log, then running
 * the real binary with the same arguments and input. The CLI resolves tools on PATH (which.ts).
 */
export interface ToolLog {
  /** PATH with the wrappers first. */
  readonly path: string;
  /** One entry per run: the tool's name, its argv, and for bconsole its input lines. */
  calls(): { tool: string; argv: string[]; input: string[] }[];
}

export function toolLog(parent: string, tools: readonly string[], basePath = process.env.PATH ?? ''): ToolLog {
  const dir = mkdtempSync(join(parent, 'tool-log-'));
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  const log = join(dir, 'calls.log');
  for (const tool of tools) {
    const real = whichSystem(tool);
    if (!real) throw new Error(`${tool} is not installed: nothing to count`);
    // One record per run: a line with the tool's name, then each argument NUL-terminated, then
    // (bconsole) its input; records end with a line holding only \x1e.
    const script = [
      '#!/bin/bash',
      'set -e',
      `log=${quote(log)}`,
      tool === 'bconsole' ? 'input=$(cat)' : 'input=',
      `{ printf '%s\\n' ${quote(tool)}; printf '%s\\0' "$@"; printf '\\n%s\\n\\x1e\\n' "$input"; } >> "$log"`,
      tool === 'bconsole' ? `printf '%s\\n' "$input" | exec ${quote(real)} "$@"` : `exec ${quote(real)} "$@"`,
      '',
    ].join('\n');
    writeFileSync(join(bin, tool), script);
    chmodSync(join(bin, tool), 0o755);
  }
  return {
    path: `${bin}:${basePath}`,
    calls() {
      if (!existsSync(log)) return [];
      return readFileSync(log, 'utf8')
        .split('\n\x1e\n')
        .filter((r) => r.trim())
        .map((r) => {
          const nl = r.indexOf('\n');
          const tool = r.slice(0, nl);
          const rest = r.slice(nl + 1);
          const end = rest.lastIndexOf('\0');
          const argv = end < 0 ? [] : rest.slice(0, end).split('\0');
          const input = rest.slice(end + 1).replace(/^\n/, '').split('\n').filter(Boolean);
          return { tool, argv, input };
        });
    },
  };
}
