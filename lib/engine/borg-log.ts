import { displayName, lineSplitter } from './progress-lines.js';

/**
 * borg 1.2 with `--progress --log-json` (asked for only when someone watches: a terminal) writes
 * one JSON object per line on stderr: `log_message` (what it would have printed as text:
 * warnings, errors, a traceback as one message), `archive_progress` (create: sizes, file count,
 * the path now read), `progress_percent` / `progress_message` (extract, cache sync), and with
 * --list `file_status`. Without --log-json the default format is the message alone, so the
 * messages joined by newlines are the stderr the plain mode gives: warnings and errors are read
 * from that text exactly as they are without it. borg writes its JSON with ASCII escapes, so a
 * file name's newline or quote never cuts a line; anything that is not one of its objects (ssh's
 * own stderr, a line cut short when borg was killed) is kept as it came.
 */
export interface BorgJsonStderr {
  /** Give it borg's stderr as it comes. */
  readonly onStderr: (chunk: string) => void;
  /** The stderr borg would have printed without --log-json and --progress (every line seen so far, a last unfinished one included). */
  text(): string;
}

export function borgJsonStderr(onProgress?: (text: string) => void): BorgJsonStderr {
  let text = '';
  const lines = lineSplitter((line) => {
    const read = readBorgJsonLine(line);
    if (read.text !== undefined) text += read.text + '\n';
    if (read.progress !== undefined) onProgress?.(read.progress);
  });
  return {
    onStderr: (chunk) => lines.push(chunk),
    text() {
      lines.end();
      return text;
    },
  };
}

/** One line of borg's --log-json stderr: its text as plain borg prints it, or a progress line for the display (or neither). */
export function readBorgJsonLine(line: string): { text?: string; progress?: string } {
  const j = parseObject(line);
  if (!j) return { text: line };
  switch (j.type) {
    case 'log_message':
      return { text: typeof j.message === 'string' ? j.message : '' };
    case 'file_status':
      return { text: `${str(j.status)} ${str(j.path)}` };
    case 'archive_progress':
      return j.finished ? {} : { progress: archiveProgressText(j) };
    case 'progress_percent':
    case 'progress_message':
      return j.finished || typeof j.message !== 'string' || !j.message.trim() ? {} : { progress: messageText(j.message, j.info) };
    default:
      return { text: line };
  }
}

const mib = (n: unknown): string => `${(Number(n) / 1048576 || 0).toFixed(2)} MiB`;

/** "1.20 GiB" would hide how it moves: MiB with two decimals, as restic's line. */
function archiveProgressText(j: Record<string, unknown>): string {
  const parts = [`${mib(j.original_size)} read`, `${mib(j.deduplicated_size)} new`, `${Number(j.nfiles) || 0} files`];
  const path = str(j.path);
  return parts.join(', ') + (path ? `  ${displayName(path, 40)}` : '');
}

/** extract's `45.2% Extracting: <path>`: its words whole, the path (info's last) shortened from the front. */
function messageText(message: string, info: unknown): string {
  const path = Array.isArray(info) && typeof info.at(-1) === 'string' ? (info.at(-1) as string) : '';
  if (path && message.endsWith(path)) return `${displayName(message.slice(0, -path.length).trim(), 60)}  ${displayName(path, 40)}`;
  return displayName(message.trim(), 100);
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v);
}

function parseObject(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const j: unknown = JSON.parse(line);
    return j && typeof j === 'object' && !Array.isArray(j) && typeof (j as { type?: unknown }).type === 'string' ? (j as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
