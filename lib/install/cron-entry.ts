import { isAbsolute } from 'node:path';
import { DEFAULT_CONFIG_FILE } from '../config/paths.js';
import { UsageError } from '../errors.js';
import { quote } from '../proc/command.js';

/** Recognises a file we wrote, so uninstall and a re-install never touch an admin's own script. */
export const CRON_MARKER = '# apiscp-backup cron entry';

/**
 * Debian's run-parts runs only names matching this (no dots: `apiscp-backup.sh` would be skipped
 * without a word); RHEL's runs any executable that is not a dotfile or backup file. Names that pass
 * here run on both.
 */
export const CRON_NAME = /^[A-Za-z0-9_-]+$/;

export function checkCronName(name: string): void {
  if (!CRON_NAME.test(name)) {
    throw new UsageError(`cron.name '${name}' is not allowed: Debian's run-parts only runs names of letters, digits, '_' and '-' (no dots)`);
  }
}

export interface CronEntryOptions {
  /** Absolute path of the node binary. */
  readonly node: string;
  /** Absolute path of the installed nightly entry: <pkg>/dist/cron.daily/apiscp-backup.js */
  readonly entry: string;
  /** Config file; left off the command line when it is the default one. */
  readonly config?: string;
}

/**
 * The file placed in /etc/cron.daily. POSIX sh, because run-parts executes it directly and
 * RHEL's minimal images have no bash guarantees beyond /bin/sh.
 *
 * node is called by absolute path: cron's PATH is /sbin:/bin:/usr/sbin:/usr/bin, and an
 * nvm-installed node (under /root/.nvm) is on no PATH cron knows. `exec` hands the process over so
 * node's exit code is the entry's (cron/anacron report it) and no shell lingers to be killed.
 * The script prints nothing itself: cron mails any output, and a healthy night must be silent.
 */
export function renderCronEntry(options: CronEntryOptions): string {
  for (const [what, path] of [['node', options.node], ['entry', options.entry], ['config', options.config]] as const) {
    if (path !== undefined && !isAbsolute(path)) throw new UsageError(`${what} must be an absolute path (cron runs with a minimal PATH and cwd /): ${path}`);
    if (path !== undefined && /[\n\r\0]/.test(path)) throw new UsageError(`${what} path contains a line break: ${JSON.stringify(path)}`);
  }
  const argv = [options.node, options.entry];
  if (options.config !== undefined && options.config !== DEFAULT_CONFIG_FILE) argv.push('--config', options.config);
  return [
    '#!/bin/sh',
    `${CRON_MARKER}: database dumps right before the backup, then the backup (written by \`apiscp-backup install\`).`,
    '# Silent when all is well; on trouble it prints a short summary and exits non-zero, which cron mails.',
    '# node by absolute path: cron\'s PATH has neither nvm\'s node nor /usr/local/bin.',
    `exec ${argv.map(quote).join(' ')}`,
    '',
  ].join('\n');
}

export function isOurCronEntry(text: string): boolean {
  return text.split('\n', 3).some((line) => line.startsWith(CRON_MARKER));
}
