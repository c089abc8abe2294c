import type { Logger } from './log.js';

/**
 * The one way a step reports a problem that does not fail the run: logged as a warning and added
 * to the run's problems, which reach status, the cron summary, heartbeats and metrics.
 * (Kept to this one function so it can be routed into typed warnings in one place.)
 */
export function recordWarning(problems: string[], log: Logger, message: string, fields: Record<string, unknown> = {}): void {
  log.warn(message, fields);
  problems.push(message);
}
