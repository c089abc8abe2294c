import { durationMs, type Config } from '../config/schema.js';
import type { Logger } from '../log.js';

export type HeartbeatConfig = Config['monitor']['heartbeat'];
export type PingKind = 'start' | 'success' | 'failure';

export interface PingOptions {
  /** The end of the run's log (or the failure summary): sent only when send_log_tail is true. */
  readonly logTail?: string;
  /**
   * Sent in the body when there is no log tail to send: a line that names no database or site
   * (warning codes and counts), so a success ping still says "with warnings".
   */
  readonly summary?: string;
  readonly log: Logger;
  /** First retry waits this long, doubling each time (default 500 ms). */
  readonly backoffMs?: number;
}

/** healthchecks.io keeps the first 10 KB of a ping body (100 KB on paid plans): send the end, not the start. */
export const MAX_BODY_BYTES = 10_000;

/**
 * Tell a healthchecks.io-style monitor that a run started, succeeded or failed, so a server
 * whose cron stopped running at all (no mail, since nothing runs) is noticed by someone else.
 *
 * A ping is best effort: it never throws and never fails the backup; a monitor that cannot be
 * reached only costs a warning. Each attempt is bounded by monitor.heartbeat.timeout, so the
 * worst case is (retries + 1) × timeout plus the backoff. The log tail goes only in a POST body
 * and only when send_log_tail is on: logs name databases and sites, which some admins must not
 * hand to a third party. Returns whether the monitor acknowledged the ping.
 */
export async function ping(kind: PingKind, config: HeartbeatConfig, options: PingOptions): Promise<boolean> {
  const url = config[kind];
  if (!url) return false;
  const { log } = options;
  // The URL's path is the check's secret (anyone holding it can ping): log only the host.
  const where = safeHost(url);
  const timeoutMs = durationMs(config.timeout);
  const body = config.send_log_tail && options.logTail ? lastBytes(options.logTail, MAX_BODY_BYTES) : options.summary ? lastBytes(options.summary, MAX_BODY_BYTES) : undefined;
  const attempts = config.retries + 1;
  let lastError = '';
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      const response = await fetch(url, {
        method: body === undefined ? 'GET' : 'POST',
        body,
        headers: body === undefined ? undefined : { 'content-type': 'text/plain; charset=utf-8' },
        signal: AbortSignal.timeout(timeoutMs),
        redirect: 'follow',
      });
      // Drain the body so the connection is released; its content does not matter.
      await response.arrayBuffer().catch(() => undefined);
      if (response.ok) {
        log.debug(`heartbeat ${kind} sent to ${where}`, { attempt });
        return true;
      }
      lastError = `HTTP ${response.status}`;
      // 4xx other than 408/429 means a wrong URL: asking again will not help.
      if (response.status < 500 && response.status !== 408 && response.status !== 429) break;
    } catch (err) {
      lastError = describeFetchError(err, timeoutMs);
    }
    if (attempt < attempts) await sleep((options.backoffMs ?? 500) * 2 ** (attempt - 1));
  }
  log.warn(`heartbeat ${kind} to ${where} failed: ${lastError}`, { attempts });
  return false;
}

function safeHost(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return '(invalid URL)';
  }
}

function describeFetchError(err: unknown, timeoutMs: number): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return `no answer within ${Math.round(timeoutMs / 100) / 10}s`;
  // undici puts the useful part (ECONNREFUSED, ENOTFOUND) in cause; the message is just "fetch failed".
  return e.cause?.code ?? e.cause?.message ?? e.message;
}

/** The last `max` bytes of UTF-8 text, cut at a character boundary. */
export function lastBytes(text: string, max: number): string {
  const buf = Buffer.from(text, 'utf8');
  if (buf.length <= max) return text;
  let start = buf.length - max;
  // Skip UTF-8 continuation bytes (10xxxxxx) so we do not start mid-character.
  while (start < buf.length && (buf[start]! & 0xc0) === 0x80) start++;
  return buf.subarray(start).toString('utf8');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
