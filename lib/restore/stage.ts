import { existsSync, lstatSync, readlinkSync, statSync } from 'node:fs';
import { open, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import type { LoadedConfig } from '../config/load.js';
import { LATEST, MANIFEST } from '../dumps/layout.js';
import type { Manifest, ManifestEntry } from '../model/manifest.js';
import type { BackupPoint, Engine, EngineContext } from '../engine/types.js';
import { listRuns, type StoredRun } from '../dumps/retention.js';
import { BackupError, RestoreError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import { checkPrivateParent, makePrivateDir } from '../private-dir.js';
import { bytes } from '../report/status.js';
import { hashFile } from '../proc/pipeline.js';
import { describeSource, readManifest, runTime, type RestoreSource } from './source.js';

/**
 * Step 2: fetch from the engine into a private staging directory (0700, under
 * restore.staging_dir), only the paths a restore needs. A local run needs no fetch.
 * Staging is the first thing a restore writes: when it runs out of space, nothing else has been
 * touched yet, and the error says so (exit 8), names restore.staging_dir and leaves it empty.
 */
export interface Staging {
  /** This restore's private directory (removed by dispose). */
  readonly dir: string;
  /** restore.staging_dir, the directory an admin can make room in or point elsewhere. */
  readonly parent: string;
  dispose(): Promise<void>;
}

export async function openStaging(loaded: LoadedConfig): Promise<Staging> {
  const parent = loaded.paths.stagingDir;
  try {
    // Never reused by name: a fresh 0700 directory under a parent only root can write (private-dir.ts).
    const dir = await makePrivateDir(parent, 'restore-', ExitCode.RESTORE_FAILED);
    return { dir, parent, dispose: () => rm(dir, { recursive: true, force: true }) };
  } catch (err) {
    if (isNoSpace(err)) throw noSpace(parent, 'it has no room for the private directory of this restore', err);
    throw err;
  }
}

/** ENOSPC (no blocks or no inodes left) and EDQUOT (a quota): no room, whatever the cause. */
function isNoSpace(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

function noSpace(parent: string, detail: string, cause?: unknown): RestoreError {
  return new RestoreError(`not enough space in the staging directory ${parent} (restore.staging_dir): ${detail}; nothing was restored (make room there, or set restore.staging_dir)`, { staging: parent }, { cause });
}

export interface StagedRun {
  readonly runId: string;
  /** The run directory (local, or its copy in staging): manifest.json + the dump files. */
  readonly dir: string;
  readonly manifest: Manifest;
}

/**
 * Fetch `paths` (and whichever of `optional` the backup has) in one call of the engine, and turn
 * a full staging disk or a missing required path into a clear RestoreError.
 */
export async function fetchPaths(engine: Engine, ctx: EngineContext, source: RestoreSource, staging: Staging, paths: readonly string[], optional: readonly string[] = []): Promise<void> {
  if (source.type !== 'engine' || !engine.fetch) throw new RestoreError(`engine ${engine.name} cannot fetch files: restore them with the software that backs them up`);
  try {
    await engine.fetch(ctx, { point: source.point, paths, into: staging.dir, ...(optional.length ? { optional } : {}) });
  } catch (err) {
    const text = err instanceof BackupError ? `${err.message} ${JSON.stringify(err.context)}` : String(err);
    if (isNoSpace(err) || /no space left on device|ENOSPC|disk quota exceeded|EDQUOT/i.test(text)) {
      throw noSpace(staging.parent, `fetching ${paths.length === 1 ? paths[0] : `${paths.length} files`} from ${describeSource(source)} filled it`, err);
    }
    // duplicity and Bacula refuse a path the backup does not have; restic and borg restore nothing.
    if (/not found in archive|No files selected to be restored|No files marked/i.test(text)) {
      throw new RestoreError(`${describeSource(source)} does not contain ${paths.slice(0, 5).join(', ')}${paths.length > 5 ? ', …' : ''}`, { paths }, { cause: err });
    }
    throw err;
  }
  const missing = paths.filter((p) => !exists(staging.dir + p));
  if (missing.length) throw new RestoreError(`${describeSource(source)} does not contain ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`, { missing });
}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * What a site restore will need from the run a backup's `latest` points at, named before that
 * link is read, so that one extraction brings it with the site's files: the run dumps.dir here
 * holds that was newest when the backup was made (dumps run right before it; Bacula's job starts
 * first, hence the grace), its manifest, the site's directory of dumps and the kinds' accounts
 * exports. Only names come from here: the content is the backup's, checked against the backup's
 * own `latest`, manifest and sha256s, and a wrong guess costs one more fetch (stageRun, stageDumps).
 */
export async function guessRunPaths(loaded: LoadedConfig, point: BackupPoint, site: string, staging: Staging): Promise<string[]> {
  const until = Date.parse(point.time) + GUESS_GRACE_MS;
  const run = listRuns(loaded.paths.dumpsDir).find((r) => r.status !== 'unreadable' && Date.parse(runTime(r.runId)) <= until);
  return run ? runSitePaths(loaded, run, site, staging) : [];
}

/** A local run's manifest, the site's directory of dumps and the accounts exports of its kinds, as paths in the backup. */
async function runSitePaths(loaded: LoadedConfig, run: StoredRun, site: string, staging: Staging): Promise<string[]> {
  if (!run.manifest) return [];
  const dumps = loaded.paths.dumpsDir;
  const entries = run.manifest.entries.filter((e) => e.status === 'ok' && e.path);
  const own = entries.filter((e) => e.object === 'database' && e.site === site);
  const kinds = new Set(own.map((e) => e.kind));
  const accounts = entries.filter((e) => (e.object === 'users' || e.object === 'globals') && kinds.has(e.kind));
  // Dumps that would not fit are left to stageDumps, which refuses them before fetching, with the sizes.
  const need = [...own, ...accounts].reduce((n, e) => n + (e.bytes ?? 0) + (e.map?.bytes ?? 0), 0);
  const free = await freeBytes(staging.dir);
  if (free !== undefined && need > free) return [join(dumps, run.runId, MANIFEST)];
  const files = [MANIFEST, ...(own.length ? [site] : []), ...accounts.flatMap((e) => [e.path!, ...(e.map ? [e.map.path] : [])])];
  // Names from a manifest here select what comes out of the backup: only inside that run's directory.
  return files.filter((f) => !f.startsWith('/') && !f.split('/').includes('..')).map((f) => join(dumps, run.runId, f));
}

/** How long after a backup point started its dumps may have been made (a Bacula job runs them in its pre-backup hook). */
const GUESS_GRACE_MS = 6 * 3600_000;

/** The dumps run a source holds: a local run as it is, or the backup's `latest` run, fetched. */
export async function stageRun(loaded: LoadedConfig, engine: Engine, ctx: EngineContext, source: RestoreSource, staging: Staging | undefined, site?: string): Promise<StagedRun> {
  if (source.type === 'local') {
    // A local run is read where it lies: dumps.dir must be root's alone, or whoever can write it
    // could plant a manifest and dumps that match it (a dump is SQL fed to a client as root).
    checkPrivateParent(loaded.paths.dumpsDir, ExitCode.RESTORE_FAILED, 'the directory of local runs (dumps.dir)');
    const manifest = readManifest(source.dir);
    if (!manifest) throw new RestoreError(`${source.dir}/${MANIFEST} is missing or unreadable`);
    return { runId: source.runId, dir: source.dir, manifest };
  }
  if (!staging) throw new Error('stageRun: an engine source needs a staging directory');
  const dumps = loaded.paths.dumpsDir;
  // A site restore fetches `latest` together with the files, and its run's manifest when it guessed the run right.
  if (!exists(staging.dir + join(dumps, LATEST))) await fetchPaths(engine, ctx, source, staging, [join(dumps, LATEST)]);
  const runId = readlinkSync(staging.dir + join(dumps, LATEST));
  if (!/^[\w.-]+$/.test(runId)) throw new RestoreError(`${describeSource(source)}: ${join(dumps, LATEST)} points at ${JSON.stringify(runId)}, not a run`);
  const manifestPath = join(dumps, runId, MANIFEST);
  if (!exists(staging.dir + manifestPath)) {
    // The guess was wrong (or there was none): the site's dumps of that run come with its manifest when dumps.dir here still has the run.
    const local = site ? listRuns(dumps).find((r) => r.runId === runId) : undefined;
    const more = local && site ? (await runSitePaths(loaded, local, site, staging)).filter((p) => p !== manifestPath) : [];
    await fetchPaths(engine, ctx, source, staging, [manifestPath], more);
  }
  const dir = staging.dir + join(dumps, runId);
  const manifest = readManifest(dir);
  if (!manifest) throw new RestoreError(`${describeSource(source)}: the manifest of run ${runId} cannot be read`);
  return { runId, dir, manifest };
}

/**
 * Fetch the dump files of `entries` (when staged) and check each against its sha256.
 * `fetched` runs once every file is there, before the checks (a restore reads ahead beside them).
 */
export async function stageDumps(loaded: LoadedConfig, engine: Engine, ctx: EngineContext, source: RestoreSource, staging: Staging | undefined, run: StagedRun, entries: readonly ManifestEntry[], fetched?: () => void): Promise<void> {
  const wanted = entries.filter((e) => e.path);
  if (source.type === 'engine' && staging) {
    // A dump's map (written beside it at dump time) comes with it: the restore reads it instead of the whole dump.
    // What a site restore's first extraction brought is not fetched (nor counted) again.
    const sizes = new Map(wanted.flatMap((e) => [[e.path!, e.bytes ?? 0] as const, ...(e.map ? [[e.map.path, e.map.bytes ?? 0] as const] : [])]));
    const toFetch = [...sizes.keys()].filter((f) => !existsSync(join(run.dir, f)));
    const need = toFetch.reduce((n, f) => n + sizes.get(f)!, 0);
    const free = toFetch.length ? await freeBytes(staging.dir) : undefined;
    if (free !== undefined && need > free) throw noSpace(staging.parent, `the dumps need ${bytes(need)}, ${bytes(free)} free`);
    if (toFetch.length) await fetchPaths(engine, ctx, source, staging, toFetch.map((f) => join(loaded.paths.dumpsDir, run.runId, f)));
  }
  for (const e of wanted) if (!existsSync(join(run.dir, e.path!))) throw new RestoreError(`${join(run.dir, e.path!)} is missing (run ${run.runId})`);
  fetched?.();
  for (const e of wanted) {
    const file = join(run.dir, e.path!);
    if (e.sha256 && (await sha256(file)) !== e.sha256) {
      // A tool that ignores a failed write leaves a short file: on a full disk, say that.
      const short = e.bytes !== undefined && statSync(file).size < e.bytes;
      if (staging && short && ((await freeBytes(staging.dir)) ?? Infinity) < e.bytes! - statSync(file).size) {
        throw noSpace(staging.parent, `${file} came out short: the disk filled while it was fetched`);
      }
      throw new RestoreError(`${file} does not match the sha256 its manifest recorded: the dump was changed or damaged after it was written`, { file });
    }
  }
}

async function freeBytes(dir: string): Promise<number | undefined> {
  try {
    const s = await statfs(dir);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}

/** A file's sha256, read as the dumps' own are hashed (one reused buffer, pipeline.ts). */
export async function sha256(file: string | Buffer): Promise<string> {
  const handle = await open(file, 'r');
  try {
    return (await hashFile(handle)).sha256;
  } finally {
    await handle.close();
  }
}
