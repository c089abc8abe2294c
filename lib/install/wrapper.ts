import { isAbsolute } from 'node:path';
import { DEFAULT_CONFIG_FILE } from '../config/paths.js';
import { UsageError } from '../errors.js';
import { quote } from '../proc/command.js';

/** Recognises the wrapper we wrote, so install/uninstall never touch an admin's own script. */
export const WRAPPER_MARKER = '# apiscp-backup wrapper';

export interface WrapperOptions {
  /** Absolute node binary of THIS server (nvm, AppStream, /usr/local/bin: each server its own). */
  readonly node: string;
  /** Absolute path of this installation's dist/scripts/apiscp-backup.js. */
  readonly cli: string;
  /** Config file; left off when it is the default one. */
  readonly config?: string;
}

/**
 * /usr/local/sbin/apiscp-backup: one fixed path on every server, so one Bacula template (the
 * add-in's local.d/servers/base.conf) serves a fleet whose node lives in different places.
 * Bacula runs RunScript commands by execvp without a shell or our PATH, so the wrapper names
 * node by absolute path and `exec`s it: the exit code is node's and no shell lingers.
 */
export function renderWrapper(options: WrapperOptions): string {
  for (const [what, path] of [['node', options.node], ['cli', options.cli], ['config', options.config]] as const) {
    if (path !== undefined && !isAbsolute(path)) throw new UsageError(`${what} must be an absolute path: ${path}`);
    if (path !== undefined && /[\n\r\0]/.test(path)) throw new UsageError(`${what} path contains a line break: ${JSON.stringify(path)}`);
  }
  const argv = [options.node, options.cli];
  if (options.config !== undefined && options.config !== DEFAULT_CONFIG_FILE) argv.push('--config', options.config);
  return [
    '#!/bin/sh',
    `${WRAPPER_MARKER}: the CLI by one fixed path, whatever node this server has (written by \`apiscp-backup install\`).`,
    `exec ${argv.map(quote).join(' ')} "$@"`,
    '',
  ].join('\n');
}

export function isOurWrapper(text: string): boolean {
  return text.split('\n', 3).some((line) => line.startsWith(WRAPPER_MARKER));
}
