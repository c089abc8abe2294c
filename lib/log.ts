import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';

export type Level = 'debug' | 'info' | 'warn' | 'error';
export type Fields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  child(fields: Fields): Logger;
  /** Warnings and errors logged so far (the failure summary quotes them). */
  readonly problems: readonly string[];
  flush(): Promise<void>;
}

export interface LoggerOptions {
  /** JSON lines go here (pino). */
  file?: string;
  level?: Level;
  /**
   * What reaches the terminal: 'quiet' (cron: nothing; the CLI prints a summary when a run
   * fails), 'problems' (warnings and errors on stderr), 'verbose' (everything, readable).
   */
  console?: 'quiet' | 'problems' | 'verbose';
}

/** A field marking an entry the caller has already printed on the terminal: the console sink skips it. */
export const SHOWN = 'shownOnTerminal';

const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

interface Sink {
  write(level: Level, msg: string, fields: Fields): void;
  flush(): Promise<void>;
}

/**
 * pino writes the JSON log file (loaded lazily: `--version` and `config validate` stay fast);
 * the console gets short readable lines or nothing, so cron stays silent on success.
 */
export async function createLogger(options: LoggerOptions = {}): Promise<Logger> {
  const level = options.level ?? 'info';
  const sinks: Sink[] = [];
  if (options.file) {
    try {
      mkdirSync(dirname(options.file), { recursive: true, mode: 0o750 });
      closeSync(openSync(options.file, 'a', 0o640));
      // `pino` as named export unbundled, as the CommonJS default in the bundle (lib/cli/bundled.ts).
      const mod = await import('pino');
      const pino = mod.pino ?? mod.default;
      const dest = pino.destination({ dest: options.file, sync: true });
      const p = pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, dest);
      sinks.push({
        write: (l, msg, fields) => p[l](fields, msg),
        flush: async () => dest.flushSync(),
      });
    } catch (err) {
      process.stderr.write(`apiscp-backup: cannot write log ${options.file}: ${(err as Error).message}\n`);
    }
  }
  const mode = options.console ?? 'problems';
  if (mode !== 'quiet') {
    sinks.push({
      write: (l, msg, fields) => {
        if (mode === 'problems' && ORDER[l] < ORDER.warn) return;
        if (fields[SHOWN]) return;
        const prefix = l === 'info' ? '' : `${l}: `;
        const extra = fields.error ? ` (${String(fields.error)})` : '';
        process.stderr.write(`${prefix}${msg}${extra}\n`);
      },
      flush: async () => undefined,
    });
  }
  return makeLogger(sinks, level, {}, []);
}

/** A logger that keeps entries in memory: for tests and for building summaries. */
export function memoryLogger(): Logger & { entries: { level: Level; msg: string; fields: Fields }[] } {
  const entries: { level: Level; msg: string; fields: Fields }[] = [];
  const logger = makeLogger([{ write: (level, msg, fields) => entries.push({ level, msg, fields }), flush: async () => undefined }], 'debug', {}, []);
  return Object.assign(logger, { entries });
}

function makeLogger(sinks: Sink[], level: Level, bound: Fields, problems: string[]): Logger {
  const emit = (l: Level, msg: string, fields?: Fields): void => {
    if (ORDER[l] < ORDER[level]) return;
    if (ORDER[l] >= ORDER.warn) problems.push(msg);
    const all = { ...bound, ...fields };
    for (const s of sinks) s.write(l, msg, all);
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => makeLogger(sinks, level, { ...bound, ...fields }, problems),
    problems,
    flush: async () => {
      await Promise.all(sinks.map((s) => s.flush()));
    },
  };
}
