import { rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import type { LoadedConfig } from '../config/load.js';
import { ConfigError, EngineError, MissingDependencyError } from '../errors.js';
import { cmd } from '../proc/command.js';
import { exitClasses } from '../proc/exit-status.js';
import { run, type RunResult } from '../proc/run.js';
import { resolveTool, whichSystem } from '../proc/which.js';
import { isRemoteRepository, remoteContext, remoteLabel, resticTlsArgs } from './remote.js';
import { resticStallWatch, type StallWatch } from './restic-stall.js';
import { runEngineTool } from './run-tool.js';
import { keepArgs, requestedPaths, type BackupPoint, type Engine, type EngineContext, type EngineResult, type NewestFetchRequest } from './types.js';

/**
 * restic 0.14 keeps ACLs (as system.posix_acl_* xattrs) and user.* xattrs when run as root.
 * Repository and password file travel in the environment (RESTIC_REPOSITORY,
 * RESTIC_PASSWORD_FILE): nothing secret and no repository URL with credentials on argv.
 */

export function resticEnv(loaded: LoadedConfig): Record<string, string> {
  const r = loaded.config.restic;
  if (!r.repository) throw new ConfigError('restic.repository is not set (e.g. /backup/restic or sftp:host:/path)', loaded.file, 'restic.repository');
  if (!r.password_file) throw new ConfigError('restic.password_file is not set (restic repositories are always encrypted)', loaded.file, 'restic.password_file');
  return { RESTIC_REPOSITORY: r.repository, RESTIC_PASSWORD_FILE: r.password_file };
}

export function resticBackupArgs(loaded: LoadedConfig, sources: readonly string[], excludes: readonly string[]): string[] {
  // --json: the closing "summary" message carries the snapshot id and sizes.
  return ['backup', '--json', '--tag', 'apiscp-backup', ...loaded.config.restic.extra_args, ...excludes.flatMap((e) => ['--exclude', e]), '--', ...sources];
}

/** Only our snapshots (tag), grouped by host and tag: a new site changes the paths, not the group. */
export function resticForgetArgs(loaded: LoadedConfig, host?: string): string[] {
  return ['forget', '--prune', '--tag', 'apiscp-backup', ...(host ? ['--host', host] : []), '--group-by', 'host,tags', ...keepArgs(loaded.config.restic.keep)];
}

export function resticRestoreArgs(loaded: LoadedConfig, dir: string): string[] {
  return ['restore', 'latest', '--target', dir, ...loaded.config.restic.extra_args];
}

/** Our snapshots of one host (this server by default). */
export function resticListArgs(host: string): string[] {
  return ['snapshots', '--json', '--tag', 'apiscp-backup', '--host', host];
}

/** restic patterns are globs: a path's own `*?[\` must match literally. */
export function resticLiteral(path: string): string {
  return path.replace(/[*?[\\]/g, '\\$&');
}

/** Only `paths` of snapshot `id` (an included directory brings its subtree). */
export function resticFetchArgs(id: string, paths: readonly string[], into: string): string[] {
  return ['restore', id, '--target', into, ...paths.flatMap((p) => ['--include', resticLiteral(p)])];
}

/** `paths` of the newest of our snapshots of `host`, picked by restic itself (`latest`): no listing first. */
export function resticFetchNewestArgs(host: string, paths: readonly string[], into: string): string[] {
  return ['restore', 'latest', '--host', host, '--tag', 'apiscp-backup', '--target', into, ...paths.flatMap((p) => ['--include', resticLiteral(p)])];
}

/**
 * Which snapshot `restic restore` took, from the line it prints first (to stdout, unless --quiet):
 * 0.14 `restoring <Snapshot 1a2b3c4d of [/a /b] at 2026-12-08 01:34:38.8 +0000 UTC by root@vm> to DIR`,
 * later versions `restoring snapshot 1a2b3c4d of […] at … by root@vm to DIR`. The time is Go's
 * (nanoseconds, trailing zeros cut, the zone it was made in), read as `snapshots --json`'s is.
 * Undefined unless exactly one such line names one: a path in the list could hold anything but a
 * line break, so the time is the last `] at TIME` of that line (after it only user@host and DIR).
 */
export function parseResticRestoring(stdout: string): { id: string; time: string } | undefined {
  const lines = stdout.split('\n').filter((l) => l.startsWith('restoring '));
  if (lines.length !== 1) return undefined;
  const m = /^restoring (?:<Snapshot|snapshot) ([0-9a-f]{8}) of \[.*\] at (\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d(?:\.\d{1,9})?) ([+-]\d\d)(\d\d)(?: [A-Za-z0-9+-]+)? by [^ ]*?>? to /.exec(lines[0]!);
  if (!m) return undefined;
  const t = new Date(`${m[2]}T${m[3]}${m[4]}:${m[5]}`);
  return Number.isNaN(t.getTime()) ? undefined : { id: m[1]!, time: t.toISOString() };
}

/** restic's "nothing to pick" for `latest` (0.14: "latest snapshot for criteria not found: no snapshot found …"). */
const NO_SNAPSHOT = /no snapshot found|latest snapshot for criteria not found/;

export function parseResticSnapshots(stdout: string): BackupPoint[] {
  const list = JSON.parse(stdout || '[]') as { time: string; id: string; short_id?: string; hostname?: string }[];
  return list
    .map((s) => ({ engine: 'restic' as const, id: s.short_id ?? s.id.slice(0, 8), time: new Date(s.time).toISOString(), level: 'Snapshot' as const, chain: 1, client: s.hostname }))
    .sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
}

/**
 * restic's documented codes (0.17+ gives 10 and 11; 0.14 exits 1 for both, so we also read the
 * message). 3 = snapshot made but some files were unreadable: a warning, not a failure.
 */
export function resticExitMessage(code: number | undefined, stderr = ''): string {
  if (code === 10 || /Is there a repository at the following location\?|unable to open config file/.test(stderr)) {
    return 'no repository at RESTIC_REPOSITORY: create it once with `apiscp-backup repo-init`';
  }
  if (code === 11 || /unable to create lock|repository is already locked/.test(stderr)) {
    return 'repository is locked by another restic (if none runs, `restic unlock`)';
  }
  if (code === 12 || /wrong password or no key found/.test(stderr)) return 'wrong password (restic.password_file)';
  if (code === 130) return 'interrupted';
  if (code === 3) return 'some source files could not be read (snapshot was made)';
  return code === undefined ? 'did not run' : `fatal error (exit ${code})`;
}

/** restic's 3: the snapshot was made but some source files could not be read. */
const RESTIC_EXIT = exitClasses({ warning: [3] });

async function runRestic(ctx: EngineContext, action: string, args: string[], watch?: StallWatch, onStdout?: (chunk: string) => void): Promise<RunResult> {
  const repository = ctx.loaded.config.restic.repository;
  const explain = (code: number | undefined, stderr: string): string => resticExitMessage(code, stderr) + remoteContext(repository, stderr);
  const argv = [...resticTlsArgs(ctx.loaded), ...args];
  const signal = watch ? (ctx.signal ? AbortSignal.any([ctx.signal, watch.signal]) : watch.signal) : ctx.signal;
  const seen = watch && onStdout ? (chunk: string) => (watch.onStdout(chunk), onStdout(chunk)) : (watch?.onStdout ?? onStdout);
  return runEngineTool('restic', action, cmd(resolveTool('restic', 'restic', 'restic (EPEL)'), argv, { env: resticEnv(ctx.loaded) }), explain, { signal, exitClass: RESTIC_EXIT, onStdout: seen });
}

/** restic backup's status lines, as they come, to ctx.onProgress (the terminal's display); undefined when nobody shows them. */
function statusLines(ctx: EngineContext): ((chunk: string) => void) | undefined {
  const progress = ctx.onProgress;
  if (!progress) return undefined;
  let rest = '';
  return (chunk) => {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines) {
      const text = resticStatusText(line);
      if (text) progress(text);
    }
  };
}

/** A `restic backup --json` status line as one short line ("45% 1.20 MiB of 2.70 MiB, 12 of 40 files, about 31 s left"); undefined for any other line. */
export function resticStatusText(line: string): string | undefined {
  if (!line.includes('"status"')) return undefined;
  try {
    const j = JSON.parse(line) as { message_type?: string; percent_done?: number; total_files?: number; files_done?: number; total_bytes?: number; bytes_done?: number; seconds_remaining?: number };
    if (j.message_type !== 'status') return undefined;
    const mib = (n: number): string => `${(n / 1048576).toFixed(2)} MiB`;
    const parts = [`${Math.floor((j.percent_done ?? 0) * 100)}%`];
    if (j.total_bytes !== undefined) parts.push(`${mib(j.bytes_done ?? 0)} of ${mib(j.total_bytes)}`);
    if (j.total_files !== undefined) parts.push(`${j.files_done ?? 0} of ${j.total_files} files`);
    if (j.seconds_remaining) parts.push(`about ${j.seconds_remaining} s left`);
    return parts.join(', ');
  } catch {
    return undefined; // a line cut short
  }
}

/** restic backup, bounded by restic.stall_timeout when the repository is remote (./restic-stall.ts). */
async function runResticBackup(ctx: EngineContext, args: string[]): Promise<RunResult> {
  const r = ctx.loaded.config.restic;
  const lines = statusLines(ctx);
  if (!isRemoteRepository(r.repository)) return runRestic(ctx, 'backup', args, undefined, lines);
  const watch = resticStallWatch(r.stall_timeout * 1000);
  try {
    return await runRestic(ctx, 'backup', args, watch, lines);
  } catch (err) {
    if (!watch.stalled() || ctx.signal?.aborted) throw err;
    throw new EngineError(
      `restic backup failed (no progress for ${r.stall_timeout} s, restic.stall_timeout; the link to the backup host ${remoteLabel(r.repository!)} broke or it did not answer)`,
      'restic',
    );
  } finally {
    watch.end();
  }
}

export interface ResticSummary {
  readonly snapshotId?: string;
  readonly bytes?: number;
  readonly filesNew?: number;
}

export function parseResticSummary(stdout: string): ResticSummary {
  for (const line of stdout.split('\n').reverse()) {
    if (!line.includes('"summary"')) continue;
    try {
      const j = JSON.parse(line) as { message_type?: string; snapshot_id?: string; data_added?: number; files_new?: number };
      if (j.message_type === 'summary') return { snapshotId: j.snapshot_id, bytes: j.data_added, filesNew: j.files_new };
    } catch {
      /* a status line cut short: keep looking */
    }
  }
  return {};
}

/** Retention on a repository we may delete from: every host's group, or only `host`'s. */
export async function resticPrune(ctx: EngineContext, host?: string): Promise<void> {
  await runRestic(ctx, 'forget', resticForgetArgs(ctx.loaded, host));
}

export const resticEngine: Engine = {
  name: 'restic',
  keepsAcls: true,
  drivesBackup: true,
  async check(ctx) {
    if (!whichSystem('restic')) throw new MissingDependencyError('restic', 'restic', 'restic (EPEL)');
    resticEnv(ctx.loaded);
    // Before any dump: a run without a repository would dump everything and only then fail.
    if ((await resticEngine.initialised!(ctx)) === false) throw new EngineError(`no restic repository at ${ctx.loaded.config.restic.repository}: create it once with \`apiscp-backup repo-init\``, 'restic');
  },
  async initialised(ctx) {
    // `cat config` reads one small file and, with --no-lock, waits for no other restic.
    const r = await run(cmd(resolveTool('restic', 'restic', 'restic (EPEL)'), [...resticTlsArgs(ctx.loaded), '--no-lock', 'cat', 'config'], { env: resticEnv(ctx.loaded) }), { signal: ctx.signal, exitClass: exitClasses({ warning: [1, 10] }) });
    if (r.exitCode === 0) return true;
    if (r.exitCode === 10 || /Is there a repository at the following location\?|unable to open config file/.test(r.stderr)) return false;
    throw new EngineError(`restic cannot open the repository ${ctx.loaded.config.restic.repository} (${resticExitMessage(r.exitCode, r.stderr)}): ${r.stderr.trim().split('\n').slice(-2).join(' / ')}`, 'restic');
  },
  async backup(ctx): Promise<EngineResult> {
    const started = Date.now();
    const r = await runResticBackup(ctx, resticBackupArgs(ctx.loaded, ctx.sources, ctx.excludes));
    const summary = parseResticSummary(r.stdout);
    const warnings: string[] = [];
    if (r.exitClass === 'warning') {
      const unreadable = r.stderr.split('\n').filter(Boolean).slice(-5).join('; ');
      warnings.push(`restic: ${resticExitMessage(3)}: ${unreadable}`);
    }
    // 0.14 skips a missing source with exit 0: still worth a line in the report.
    for (const line of r.stderr.split('\n')) if (/does not exist, skipping$/.test(line)) warnings.push(`restic: ${line.trim()}`);
    if (!summary.snapshotId) throw new EngineError('restic backup printed no snapshot id: no snapshot was made', 'restic', { stderr: r.stderr.slice(-2000) });
    for (const w of warnings) ctx.log.warn(w);
    return { level: 'Snapshot', durationMs: Date.now() - started, id: summary.snapshotId, bytes: summary.bytes, warnings };
  },
  async prune(ctx) {
    // The REST server refuses deletes (rclone serve restic --append-only): retention runs there.
    if (ctx.loaded.config.restic.append_only) {
      ctx.log.info('restic.append_only: retention runs on the backup host (apiscp-backup prune --print), not here');
      return;
    }
    await resticPrune(ctx);
  },
  async init(ctx) {
    await runRestic(ctx, 'init', ['init']);
    return `created restic repository ${ctx.loaded.config.restic.repository}`;
  },
  async restore(ctx, dir) {
    await runRestic(ctx, 'restore', resticRestoreArgs(ctx.loaded, dir));
  },
  async list(ctx, options) {
    const r = await runRestic(ctx, 'snapshots', resticListArgs(options?.client ?? hostname()));
    return parseResticSnapshots(r.stdout);
  },
  async fetchNewest(ctx, request) {
    return resticFetchNewest(ctx, request);
  },
  async fetch(ctx, request) {
    // One restore for every path: a path the snapshot lacks restores nothing (fetchPaths checks the required ones).
    await runRestic(ctx, 'restore', [...resticFetchArgs(request.point.id, requestedPaths(request), request.into), ...ctx.loaded.config.restic.extra_args]);
  },
};

/**
 * restore site's extraction without `restic snapshots` first (a second open of the repository:
 * its key's KDF again): restic picks the newest of our snapshots of the host and says which.
 * When that line cannot be read (another wording, --quiet in restic.extra_args), which snapshot
 * came is not known: what it restored is removed and the newest listed is fetched again by id,
 * so the name given is always that of what was restored.
 */
async function resticFetchNewest(ctx: EngineContext, request: NewestFetchRequest): Promise<BackupPoint | undefined> {
  const host = request.client ?? hostname();
  const paths = [...request.paths, ...(request.optional ?? [])];
  const point = (named: { id: string; time: string }): BackupPoint => ({ engine: 'restic', id: named.id, time: named.time, level: 'Snapshot', chain: 1, client: host });
  // The line comes first, before the files: the caller can name the snapshot while restic extracts it.
  let head = '';
  let seen = false;
  const early = request.onNamed
    ? (chunk: string): void => {
        if (seen) return;
        head += chunk;
        const line = head.split('\n').slice(0, -1).find((l) => l.startsWith('restoring '));
        seen = line !== undefined || head.length > 65536;
        const named = line === undefined ? undefined : parseResticRestoring(line);
        if (named) request.onNamed!(point(named));
      }
    : undefined;
  let out: RunResult;
  try {
    out = await runRestic(ctx, 'restore', [...resticFetchNewestArgs(host, paths, request.into), ...ctx.loaded.config.restic.extra_args], undefined, early);
  } catch (err) {
    if (err instanceof EngineError && NO_SNAPSHOT.test(err.message)) return undefined;
    throw err;
  }
  // The whole output decides (one such line, no other): what was named early is confirmed or replaced.
  const named = parseResticRestoring(out.stdout);
  if (named) return point(named);
  ctx.log.debug('restic restore latest did not say which snapshot it restored: fetching the newest listed by its id');
  const newest = (await resticEngine.list!(ctx, { client: host }))[0];
  if (!newest) return undefined;
  request.onNamed?.(newest);
  await Promise.all(paths.map((p) => rm(request.into + p, { recursive: true, force: true })));
  await resticEngine.fetch!(ctx, { ...request, point: newest });
  return newest;
}
