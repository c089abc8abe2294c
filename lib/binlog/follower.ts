import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { MissingDependencyError } from '../errors.js';
import type { Logger } from '../log.js';
import { startChild, type StartedChild } from '../proc/child.js';
import { cmd, errorLine } from '../proc/command.js';
import { whichSystem } from '../proc/which.js';
import { binlogRemovals, listRuns } from '../dumps/retention.js';
import { addGap, binlogSeq, ensureBinlogDir, localBinlogs, readSums, sha256File, writeState, writeSums, type FollowState } from './store.js';

/**
 * `binlog follow`: the server's binlogs copied as they are written, by the server's own tool
 * (`mariadb-binlog --read-from-remote-server --raw --stop-never`, a replication client), into
 * `<dumps.dir>/binlog/`. One long-lived child at a time; when it ends (the server restarted, the
 * network dropped, the child was killed) the follower starts another from the newest file it has
 * (raw mode rewrites that file whole from its start, so a half-copied file is completed). Every
 * other file is closed: its sha256 goes into SHA256SUMS. A file the server no longer has when we
 * ask for it is a gap (gaps.json): the copies resume at the server's oldest file.
 */
export interface FollowInput {
  readonly dumpsDir: string;
  /** The option file with the replication account's credentials (0600, in a secret dir). */
  readonly optionFile: string;
  readonly secrets: readonly string[];
  /** Queries on the server as that account (SHOW BINARY LOGS, SHOW MASTER STATUS). */
  readonly query: (sql: string) => Promise<string[][]>;
  readonly log: Logger;
  readonly signal: AbortSignal;
  /** How often the state is written and closed files summed (ms). */
  readonly tickMs?: number;
  /** First wait before reconnecting; doubles up to maxRetryMs. */
  readonly retryMs?: number;
  readonly maxRetryMs?: number;
  /** Server id the replication client announces (must differ from every server's and other followers'). */
  readonly serverId?: number;
}

export async function follow(input: FollowInput): Promise<void> {
  const tool = whichSystem('mariadb-binlog') ?? whichSystem('mysqlbinlog');
  if (!tool) throw new MissingDependencyError('mariadb-binlog', 'mariadb-client', 'mariadb');
  const dir = ensureBinlogDir(input.dumpsDir);
  const { log, signal } = input;
  const tickMs = input.tickMs ?? 5000;
  let retry = input.retryMs ?? 1000;
  let lastError: string | undefined;
  while (!signal.aborted) {
    const start = await startFile(input, dir).catch((err: unknown) => {
      lastError = err instanceof Error ? err.message : String(err);
      return undefined;
    });
    if (!start) {
      await tick(input, dir, false, lastError);
      log.warn(`binlog follow: the server does not answer (${lastError}); trying again in ${retry / 1000} s`);
      await sleep(retry, signal);
      retry = Math.min(retry * 2, input.maxRetryMs ?? 30_000);
      continue;
    }
    const child = startChild(
      cmd(tool, [
        `--defaults-extra-file=${input.optionFile}`,
        '--read-from-remote-server',
        '--raw',
        '--stop-never',
        `--stop-never-slave-server-id=${input.serverId ?? 65_042}`,
        `--result-file=${dir}/`,
        start,
      ]),
      { secrets: input.secrets, signal },
    );
    log.info(`binlog follow: copying from ${start}`, { pid: child.pid });
    const end = await watch(child, input, dir, tickMs);
    if (signal.aborted) break;
    lastError = errorLine(child.failure(end).stderrTail ?? '') || child.failure(end).message;
    log.warn(`binlog follow: the copy stopped (${lastError}); reconnecting in ${retry / 1000} s`);
    await tick(input, dir, false, lastError);
    await sleep(retry, signal);
    retry = Math.min(retry * 2, input.maxRetryMs ?? 30_000);
  }
  await tick(input, dir, false, 'stopped').catch(() => undefined);
}

/** Runs the periodic work while the child copies; its end. A child that ran a while resets the wait. */
async function watch(child: StartedChild, input: FollowInput, dir: string, tickMs: number) {
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> | undefined;
  const beat = (): void => {
    if (inFlight) return;
    inFlight = tick(input, dir, true)
      .catch((err: unknown) => input.log.warn(`binlog follow: ${err instanceof Error ? err.message : String(err)}`))
      .finally(() => (inFlight = undefined));
  };
  timer = setInterval(beat, tickMs);
  beat();
  try {
    return await child.ended;
  } finally {
    clearInterval(timer);
    timer = undefined;
    // A beat still running would write "connected" after the caller's "stopped": let it finish first.
    await inFlight;
  }
}

/**
 * Where to start: the newest file we have, if the server still has it; else the server's oldest
 * (a gap when we had older files: recorded). Throws when the server cannot be asked.
 */
async function startFile(input: FollowInput, dir: string): Promise<string> {
  const serverFiles = (await input.query('SHOW BINARY LOGS')).map((r) => r[0]!).filter(Boolean);
  if (!serverFiles.length) throw new Error('the server lists no binary logs (log_bin off?)');
  const local = localBinlogs(dir);
  const newest = local.at(-1);
  if (newest && serverFiles.includes(newest.name)) return newest.name;
  if (!newest) return serverFiles[0]!;
  // The server rotated and purged past our newest copy while we were away.
  const next = serverFiles.find((f) => (binlogSeq(f) ?? 0) > newest.seq) ?? serverFiles.at(-1)!;
  if ((binlogSeq(next) ?? 0) > newest.seq + 1) {
    const before = new Date(newest.mtimeMs).toISOString();
    addGap(dir, { after: newest.name, resumedAt: next, detectedAt: new Date().toISOString(), lastEventBefore: before });
    input.log.warn(`binlog follow: the server no longer has the files between ${newest.name} and ${next}: points in time after ${before} are out of reach until the next dump`);
  }
  return next;
}

/** Sums the closed files, removes those no kept dump needs, writes follow.json. */
async function tick(input: FollowInput, dir: string, connected: boolean, lastError?: string): Promise<void> {
  const files = localBinlogs(dir);
  const sums = readSums(dir);
  let changed = false;
  for (const f of files.slice(0, -1)) {
    if (sums.has(f.name)) continue;
    sums.set(f.name, await sha256File(join(dir, f.name)));
    changed = true;
  }
  for (const name of binlogRemovals(files, listRuns(input.dumpsDir), binlogSeq)) {
    rmSync(join(dir, name), { force: true });
    sums.delete(name);
    changed = true;
    input.log.info(`binlog follow: removed ${name} (older than every kept dump's position)`);
  }
  for (const name of [...sums.keys()]) if (!files.some((f) => f.name === name)) (sums.delete(name), (changed = true));
  if (changed) writeSums(dir, sums);
  let server: FollowState['server'];
  if (connected) {
    const row = (await input.query('SHOW MASTER STATUS').catch(() => []))[0];
    if (row?.[0]) server = { file: row[0], position: Number(row[1]) };
  }
  const current = files.at(-1);
  const localBytes = server ? files.find((f) => f.name === server.file)?.bytes : undefined;
  writeState(dir, {
    pid: process.pid,
    updatedAt: new Date().toISOString(),
    connected,
    ...(current ? { file: current.name } : {}),
    ...(server ? { server } : {}),
    ...(localBytes !== undefined ? { localBytes } : {}),
    ...(lastError ? { lastError } : {}),
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
