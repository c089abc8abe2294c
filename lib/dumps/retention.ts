import { readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { compareRunIds, IN_PROGRESS, LATEST, MANIFEST, RUN_ID } from './layout.js';
import type { Manifest } from './manifest.js';

export interface RunDir {
  readonly runId: string;
  readonly dir: string;
  readonly status: 'complete' | 'failed' | 'unreadable';
}

/** Finished runs, newest first (run ids sort by time). */
export function listRuns(dumpsDir: string): RunDir[] {
  let names: string[];
  try {
    names = readdirSync(dumpsDir);
  } catch {
    return [];
  }
  return names
    .filter((n) => RUN_ID.test(n))
    .sort(compareRunIds)
    .reverse()
    .map((runId) => {
      const dir = join(dumpsDir, runId);
      try {
        const m = JSON.parse(readFileSync(join(dir, MANIFEST), 'utf8')) as Manifest;
        return { runId, dir, status: m.status === 'complete' ? 'complete' : 'failed' } as RunDir;
      } catch {
        return { runId, dir, status: 'unreadable' } as RunDir;
      }
    });
}

export function latestRunId(dumpsDir: string): string | undefined {
  try {
    return readlinkSync(join(dumpsDir, LATEST));
  } catch {
    return undefined;
  }
}

/**
 * Keep the newest `keep` complete runs. Failed runs are kept only while they are newer than the
 * newest complete run (their good dumps may be all there is for a day). The run `latest` points
 * at and runs named in `pinned` (a backup is reading them) are never deleted. Leftover
 * `.inprogress` directories are from crashed runs: the caller holds the lock, so nobody writes them.
 */
export function applyRetention(dumpsDir: string, keep: number, log: Logger, pinned: ReadonlySet<string> = new Set(), current?: string): string[] {
  const removed: string[] = [];
  const runs = listRuns(dumpsDir);
  const latest = latestRunId(dumpsDir);
  const newestComplete = runs.find((r) => r.status === 'complete');
  let completeSeen = 0;
  for (const run of runs) {
    if (run.runId === latest || pinned.has(run.runId) || run.runId === current) {
      if (run.status === 'complete') completeSeen++;
      continue;
    }
    let drop = false;
    if (run.status === 'complete') drop = ++completeSeen > keep;
    else drop = newestComplete !== undefined && compareRunIds(run.runId, newestComplete.runId) < 0;
    if (drop) {
      rmSync(run.dir, { recursive: true, force: true });
      removed.push(run.runId);
    }
  }
  for (const name of safeReaddir(dumpsDir)) {
    if (name.endsWith(IN_PROGRESS) && name !== `${current}${IN_PROGRESS}`) {
      rmSync(join(dumpsDir, name), { recursive: true, force: true });
      removed.push(name);
    }
  }
  if (removed.length) log.debug('retention removed old runs', { removed });
  return removed;
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir).filter((n) => statSync(join(dir, n)).isDirectory());
  } catch {
    return [];
  }
}
