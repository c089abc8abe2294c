import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, statfs, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { LoadedConfig } from '../config/load.js';
import { ConfigError, EngineError, MissingDependencyError } from '../errors.js';
import { SITE_ID } from '../model/site.js';
import { cmd, type Command } from '../proc/command.js';
import type { RunResult } from '../proc/run.js';
import { resolveTool, whichSystem } from '../proc/which.js';
import { chainManifests, mergeFetchRuns, parseDuplicityManifest, toIndex, volumesTouching, type FetchRun, type VolumeRange } from './duplicity-manifest.js';
import { duplicityProgressLines } from './duplicity-progress.js';
import { runEngineTool } from './run-tool.js';
import { requestedPaths, type BackupLevel, type BackupPoint, type Engine, type EngineContext, type EngineResult, type FetchRequest } from './types.js';

/**
 * Duplicity 0.8.22 backs up ONE source directory. We give it `/` and select with include/exclude
 * options (first match wins: excludes first, then the sources, then `--exclude '**'`), so a
 * restore lays paths out as `DIR/<absolute source path>` like restic and borg do.
 * It drops POSIX ACLs and xattrs (keepsAcls false): pre-backup writes the ACL sidecar.
 */

/** Options shared by every duplicity action: where its cache lives (`archiveDir`: a copy of it) and how to decrypt. */
export function duplicityCommonArgs(loaded: LoadedConfig, archiveDir = loaded.paths.duplicityArchiveDir): string[] {
  const d = loaded.config.duplicity;
  return ['--archive-dir', archiveDir, '--name', d.name, ...(d.passphrase_file ? [] : ['--no-encryption'])];
}

export function duplicityBackupArgs(loaded: LoadedConfig, sources: readonly string[], excludes: readonly string[]): string[] {
  const d = loaded.config.duplicity;
  return [
    '--full-if-older-than',
    d.full_every,
    ...duplicityCommonArgs(loaded),
    ...d.extra_args,
    ...excludes.flatMap((e) => ['--exclude', e]),
    ...sources.flatMap((s) => ['--include', s]),
    '--exclude',
    '**',
    '/',
    target(loaded),
  ];
}

export function duplicityPruneArgs(loaded: LoadedConfig): string[] {
  const d = loaded.config.duplicity;
  return ['remove-all-but-n-full', String(d.keep_full), '--force', ...duplicityCommonArgs(loaded), ...d.extra_args, target(loaded)];
}

/** `--force` only into an empty dir: into a non-empty one duplicity must refuse (exit 11). */
export function duplicityRestoreArgs(loaded: LoadedConfig, dir: string, force: boolean): string[] {
  return ['restore', ...(force ? ['--force'] : []), ...duplicityCommonArgs(loaded), ...loaded.config.duplicity.extra_args, target(loaded), dir];
}

export function duplicityStatusArgs(loaded: LoadedConfig): string[] {
  return ['collection-status', ...duplicityCommonArgs(loaded), ...loaded.config.duplicity.extra_args, target(loaded)];
}

/**
 * One path of the backup set at `time` (epoch seconds: duplicity's own time format) restored AS
 * `dest`. Paths are relative to the source root `/`. duplicity reads the full and every
 * incremental up to that time (the chain).
 */
export function duplicityFetchArgs(loaded: LoadedConfig, time: string, path: string, dest: string, archiveDir?: string): string[] {
  const epoch = String(Math.floor(Date.parse(time) / 1000));
  return ['restore', '--file-to-restore', path.replace(/^\/+/, ''), '-t', epoch, ...duplicityCommonArgs(loaded, archiveDir), ...loaded.config.duplicity.extra_args, target(loaded), dest];
}

/**
 * `collection-status` lists every backup set as `Full|Incremental  <ctime>  <volumes>`, chain by
 * chain (each starts with its Full). Times are printed in local time, as Date.parse reads them.
 */
export function parseCollectionStatus(output: string): BackupPoint[] {
  const points: BackupPoint[] = [];
  let chain = 0;
  for (const line of output.split('\n')) {
    const m = /^\s*(Full|Incremental)\s+(\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4})\s+(\d+)\s*$/.exec(line);
    if (!m) continue;
    chain = m[1] === 'Full' ? 1 : chain + 1;
    const time = new Date(Date.parse(m[2]!)).toISOString();
    points.push({ engine: 'duplicity', id: time.replace(/\.000Z$/, 'Z'), time, level: m[1] as BackupLevel, chain });
  }
  return points.sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
}

/** Exit codes from duplicity/errors.py and field notes, as the admin should read them. */
export const DUPLICITY_EXIT: Readonly<Record<number, string>> = {
  1: 'generic failure',
  2: 'bad command line',
  11: 'restore target exists and is not empty',
  23: 'another duplicity holds the archive dir lock (a backup still running, or a stale lockfile)',
  30: 'unexpected exception (a duplicity bug or a corrupt cache: see its output)',
  31: 'gpg failed (wrong passphrase or missing key)',
  38: 'connection to the backend failed',
  50: 'backend error',
  51: 'backend: permission denied',
  52: 'backend: not found',
  53: 'backend: no space left',
  54: 'backend: quota exceeded',
  55: 'backend: connection failed',
};

export function duplicityExitMessage(code: number | undefined): string {
  if (code === undefined) return 'did not run';
  return DUPLICITY_EXIT[code] ?? (code >= 50 && code <= 59 ? 'backend error' : `exit code ${code}`);
}

/** PASSPHRASE goes into the environment only: never argv, where `ps` shows it. */
export async function duplicityCommand(loaded: LoadedConfig, args: string[]): Promise<{ command: Command; secrets: string[] }> {
  const file = loaded.config.duplicity.passphrase_file;
  const duplicity = resolveTool('duplicity', 'duplicity', 'duplicity (EPEL)');
  if (!file) return { command: cmd(duplicity, args), secrets: [] };
  const passphrase = (await readFile(file, 'utf8')).replace(/\r?\n$/, '');
  return { command: cmd(duplicity, args, { env: { PASSPHRASE: passphrase } }), secrets: [passphrase] };
}

async function runDuplicity(ctx: EngineContext, action: string, args: string[], options: { signal?: AbortSignal; onStdout?: (chunk: string) => void } = {}): Promise<RunResult> {
  const { command, secrets } = await duplicityCommand(ctx.loaded, args);
  return runEngineTool('duplicity', action, command, (code) => duplicityExitMessage(code), { signal: options.signal ?? ctx.signal, secrets, onStdout: options.onStdout });
}

/**
 * --progress only when someone watches (a terminal): it makes duplicity read the source twice
 * (a dry run first, to estimate), which cron has no use for. Every second: a backup of minutes
 * moves visibly.
 */
export const DUPLICITY_PROGRESS_ARGS = ['--progress', '--progress-rate', '1'];

function target(loaded: LoadedConfig): string {
  const t = loaded.config.duplicity.target;
  if (!t) throw new ConfigError('duplicity.target is not set (e.g. file:///backup/duplicity)', loaded.file, 'duplicity.target');
  return t;
}

/** "forcing full backup" (too old) and "switching to full backup" (no chain yet) mean Full. */
export function parseDuplicityLevel(output: string): BackupLevel {
  return /(forcing|switching to) full backup/i.test(output) ? 'Full' : 'Incremental';
}

export const duplicityEngine: Engine = {
  name: 'duplicity',
  keepsAcls: false,
  drivesBackup: true,
  async check(ctx) {
    if (!whichSystem('duplicity')) throw new MissingDependencyError('duplicity', 'duplicity', 'duplicity (EPEL)');
    target(ctx.loaded);
    const file = ctx.loaded.config.duplicity.passphrase_file;
    if (file) await readFile(file).catch((e: Error) => {
      throw new ConfigError(`duplicity.passphrase_file ${file}: ${e.message}`, ctx.loaded.file, 'duplicity.passphrase_file');
    });
  },
  async backup(ctx): Promise<EngineResult> {
    const started = Date.now();
    const progress = ctx.onProgress;
    const args = duplicityBackupArgs(ctx.loaded, ctx.sources, ctx.excludes);
    const r = await runDuplicity(ctx, 'backup', progress ? [...DUPLICITY_PROGRESS_ARGS, ...args] : args, progress ? { onStdout: duplicityProgressLines(progress) } : {});
    const out = r.stdout + '\n' + r.stderr;
    const errors = Number(/^Errors (\d+)/m.exec(out)?.[1] ?? 0);
    const bytes = /^TotalDestinationSizeChange (\d+)/m.exec(out)?.[1];
    const warnings = errors > 0 ? [`duplicity: ${errors} file(s) could not be read: ${lastLines(r.stderr)}`] : [];
    for (const w of warnings) ctx.log.warn(w);
    const id = await newestSet(ctx.loaded, started);
    return { level: parseDuplicityLevel(out), durationMs: Date.now() - started, ...(id ? { id } : {}), bytes: bytes ? Number(bytes) : undefined, warnings };
  },
  async prune(ctx) {
    await runDuplicity(ctx, 'remove-all-but-n-full', duplicityPruneArgs(ctx.loaded));
  },
  async restore(ctx, dir) {
    const empty = await readdir(dir).then((e) => e.length === 0, () => false);
    await runDuplicity(ctx, 'restore', duplicityRestoreArgs(ctx.loaded, dir, empty));
  },
  async list(ctx) {
    return parseCollectionStatus((await runDuplicity(ctx, 'collection-status', duplicityStatusArgs(ctx.loaded))).stdout);
  },
  fetch: duplicityFetch,
};

/**
 * How many restore runs of one fetch go at once. Every run reads (copies, hashes, decrypts,
 * unpacks) each volume that holds its path up to that path, so paths that could not be merged
 * into one run each cost a pass over their volumes; two runs side by side keep two cores on
 * that work (a site restore's merged runs: the site's directory beside dumps.dir).
 */
export const DUPLICITY_FETCH_RUNS = 2;

/** What duplicity prints once it has read the collection (and synced its cache when it had to). */
const COLLECTION_READ = /^Last full backup date/m;

async function duplicityFetch(ctx: EngineContext, request: FetchRequest): Promise<void> {
  // One path per run: --file-to-restore takes one, and 0.8.22 ignores --include/--exclude on
  // restore ("currently work only when backing up"). The destination must not exist yet.
  // Paths whose common directory reads no more volumes than they do go in one run of that
  // directory (duplicity-manifest.ts); a merged run that fails gives way to one run per path.
  // duplicity locks its archive dir for a whole run: a second run at once reads a copy of the
  // cache (links to its files, in the staging directory), made once the first run has read the
  // collection, so a cache it had to sync is copied synced. Runs start in the request's order,
  // each once the one before it has read the collection.
  const paths = requestedPaths(request);
  const optional = new Set(request.optional ?? []);
  const queue: FetchRun[] = [...(await planFetchRuns(ctx, request, paths))];
  const abort = new AbortController();
  const signal = ctx.signal ? AbortSignal.any([ctx.signal, abort.signal]) : abort.signal;
  const free = [ctx.loaded.paths.duplicityArchiveDir];
  const copies: string[] = [];
  const errors: unknown[] = [];
  const failed = (err: unknown): void => {
    if (!errors.length) abort.abort();
    errors.push(err);
  };
  const running = new Set<Promise<void>>();
  try {
    while (queue.length || running.size) {
      while (running.size >= DUPLICITY_FETCH_RUNS || (!queue.length && running.size)) await Promise.race(running);
      if (errors.length || signal.aborted) break;
      const job = queue.shift();
      if (!job) continue;
      let archive = free.pop();
      if (archive === undefined) {
        archive = join(request.into, `.duplicity-cache-${copies.length + 1}`);
        copies.push(archive);
        await cacheCopy(ctx.loaded, archive);
      }
      const p = job.path;
      const dest = request.into + p;
      await mkdir(dirname(dest), { recursive: true, mode: 0o700 });
      let read!: () => void;
      const collectionRead = new Promise<void>((resolve) => (read = resolve));
      const slot = archive;
      const task: Promise<void> = runDuplicity(ctx, 'restore', duplicityFetchArgs(ctx.loaded, request.point.time, p, dest, slot), { signal, onStdout: (chunk) => COLLECTION_READ.test(chunk) && read() })
        .then(
          () => undefined,
          async (err: unknown) => {
            if (job.covers.length > 1 && !signal.aborted) {
              // The merge only saves time: whatever went wrong, the paths get their own runs (and their own errors).
              ctx.log.debug('duplicity: a merged restore run failed, one run per path instead', { path: p, error: String(err) });
              await rm(dest, { recursive: true, force: true });
              queue.unshift(...job.covers.map((c) => ({ path: c, covers: [c] })));
              return;
            }
            // 19: "not found in archive - no files restored" (duplicity/log.py), for a path that may be missing.
            if (!(optional.has(p) && err instanceof EngineError && err.context.exitCode === 19)) failed(err);
          },
        )
        .catch(failed)
        .finally(() => {
          read();
          free.push(slot);
          running.delete(task);
        });
      running.add(task);
      await collectionRead;
    }
  } catch (err) {
    failed(err);
  }
  await Promise.all(running);
  for (const c of copies) await rm(c, { recursive: true, force: true });
  // The first failure: the runs it stopped fail after it.
  if (errors.length) throw errors[0];
}

/**
 * The runs of one fetch: merged where the manifests of the chain the restore reads say it costs
 * no extra volume (and staging has room for those volumes), else one path per run. A manifest
 * missing or unreadable: one path per run, as without this.
 */
async function planFetchRuns(ctx: EngineContext, request: FetchRequest, paths: readonly string[]): Promise<readonly FetchRun[]> {
  const single = paths.map((p) => ({ path: p, covers: [p] }));
  if (paths.length < 2) return single;
  const dir = join(ctx.loaded.paths.duplicityArchiveDir, ctx.loaded.config.duplicity.name);
  const chain = chainManifests(await readdir(dir).catch(() => []), Math.floor(Date.parse(request.point.time) / 1000));
  if (!chain) return single;
  const sets: VolumeRange[][] = [];
  for (const name of chain) {
    const parsed = parseDuplicityManifest(await readFile(join(dir, name)).catch(() => Buffer.alloc(0)));
    if (!parsed.ok) {
      ctx.log.debug('duplicity: manifest not understood, one restore run per path', { manifest: name, line: parsed.line, reason: parsed.reason });
      return single;
    }
    sets.push([...parsed.volumes]);
  }
  const room = await statfs(request.into).then((s) => s.bavail * s.bsize, () => 0);
  const volsize = volumeBytes(ctx.loaded.config.duplicity.extra_args);
  const home = ctx.loaded.paths.home;
  // A site's own directory (everything in it is that site's) and dumps.dir: never a directory of several sites.
  const sites = paths.flatMap((p) => {
    const name = p.startsWith(home + '/') ? p.slice(home.length + 1).split('/')[0]! : '';
    return SITE_ID.test(name) ? [join(home, name)] : [];
  });
  return mergeFetchRuns({
    paths,
    sets,
    roots: [ctx.loaded.paths.dumpsDir, ...new Set(sites)],
    usable: (d) => !existsSync(request.into + d) && sets.reduce((n, set) => n + volumesTouching(set, toIndex(d)).size, 0) * volsize <= room,
  });
}

/** --volsize (MB; 200 by default in 0.8.22): what one volume may hold, compressed. */
function volumeBytes(extra: readonly string[]): number {
  let mb = 200;
  extra.forEach((a, k) => {
    const v = a === '--volsize' ? extra[k + 1] : /^--volsize=(.*)$/.exec(a)?.[1];
    if (v !== undefined && /^\d+$/.test(v)) mb = Number(v);
  });
  return mb * 1024 * 1024;
}

/**
 * The archive dir's cache of this backup name seen from `dir`: a symlink to each of its files
 * (the manifests and signatures duplicity reads; the lock file left out, so the copy has its own).
 */
async function cacheCopy(loaded: LoadedConfig, dir: string): Promise<string> {
  const name = loaded.config.duplicity.name;
  const own = join(loaded.paths.duplicityArchiveDir, name);
  await mkdir(join(dir, name), { recursive: true, mode: 0o700 });
  for (const f of await readdir(own).catch(() => [] as string[])) if (f !== 'lockfile') await symlink(join(own, f), join(dir, name, f));
  return dir;
}

/**
 * The backup set this run made, named as `list` names it (its time: what `restore --from`
 * takes). duplicity prints no name; its archive dir (the local cache, no remote call) holds each
 * set's manifest as `duplicity-full.<time>.manifest` or `duplicity-inc.<from>.to.<time>.manifest`,
 * <time> being when that duplicity started: the newest, if not older than this run.
 */
async function newestSet(loaded: LoadedConfig, startedMs: number): Promise<string | undefined> {
  const names = await readdir(join(loaded.paths.duplicityArchiveDir, loaded.config.duplicity.name)).catch(() => [] as string[]);
  return duplicitySetId(names, startedMs);
}

export function duplicitySetId(names: readonly string[], startedMs: number): string | undefined {
  const times = names
    .map((n) => /^duplicity-(?:full|inc\.\d{8}T\d{6}Z\.to)\.(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z\.manifest(?:\.gpg)?$/.exec(n))
    .filter((m) => m !== null)
    .map((m) => `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`)
    .sort();
  const newest = times.at(-1);
  return newest && Date.parse(newest) >= Math.floor(startedMs / 1000) * 1000 ? newest : undefined;
}

function lastLines(text: string, n = 2): string {
  return text.split('\n').map((l) => l.trim()).filter(Boolean).slice(-n).join(' / ');
}
