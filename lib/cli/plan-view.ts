import { join } from 'node:path';
import type { LoadedConfig } from '../config/load.js';
import type { EngineName } from '../config/schema.js';
import { LATEST } from '../dumps/layout.js';
import { freeBytes } from '../dumps/space.js';
import { getEngine } from '../engine/index.js';
import type { BackupPoint } from '../engine/types.js';
import { BackupError } from '../errors.js';
import { allKinds } from '../kinds/index.js';
import { buildSiteLookup } from '../job/site-lookup.js';
import type { Logger } from '../log.js';
import type { ServerRecord } from '../model/manifest.js';
import type { KindName } from '../model/kind.js';
import { SERVER_SITE } from '../model/site.js';
import { buildPlan, closeSessions } from '../plan/plan.js';
import { expandBackupPaths } from '../plan/paths.js';
import { sizeIn } from '../report/status.js';
import { readManifest } from '../restore/source.js';

/** One database (or server-wide export) a run would dump, with what its last dump weighed. */
export interface PlannedRow {
  readonly kind: KindName;
  readonly database: string | null;
  readonly object: string;
  readonly site: string;
  readonly lockMode?: string;
  /** Bytes of its dump in the newest run, when that run has one. */
  readonly lastBytes?: number;
}

export interface PlanView {
  readonly servers: readonly ServerRecord[];
  /** Per kind that answered: every database it has (before include/exclude). */
  readonly listed: Readonly<Record<string, number>>;
  readonly rows: readonly PlannedRow[];
  /** Problems planning met (a server down, a database that cannot be planned). */
  readonly failures: readonly string[];
  readonly dumpsDir: string;
  readonly freeBytes?: number;
  readonly estimatedBytes?: number;
  readonly estimateBasis?: string;
}

/**
 * What a run would dump, found the way a run finds it (the same plan: servers, include/exclude,
 * sites, lock modes), and nothing written: the sessions are closed before this returns.
 */
export async function viewPlan(loaded: LoadedConfig, log: Logger, signal: AbortSignal, options: { sites: boolean }): Promise<PlanView> {
  const kinds = loaded.config.databases.method === 'apnscp' ? [] : allKinds;
  const siteOf = options.sites && loaded.config.databases.method !== 'apnscp' ? await buildSiteLookup(loaded, log, signal) : () => undefined;
  const plan = await buildPlan({ loaded, log, kinds, siteOf, signal });
  try {
    const last = readManifest(join(loaded.paths.dumpsDir, LATEST));
    const sizeOf = new Map((last?.entries ?? []).filter((e) => e.status === 'ok').map((e) => [`${e.kind}\0${e.object}\0${e.database ?? ''}`, e.bytes]));
    const rows: PlannedRow[] = plan.items.map((i) => ({
      kind: i.spec.kind,
      database: i.spec.database,
      object: i.spec.object,
      site: i.site,
      lockMode: i.spec.lockMode,
      lastBytes: sizeOf.get(`${i.spec.kind}\0${i.spec.object}\0${i.spec.database ?? ''}`),
    }));
    const known = rows.filter((r) => r.lastBytes !== undefined);
    let free: number | undefined;
    try {
      free = freeBytes(loaded.paths.dumpsDir);
    } catch {
      free = undefined;
    }
    return {
      servers: plan.servers,
      listed: Object.fromEntries([...plan.listed].map(([k, v]) => [k, v.size])),
      rows,
      failures: plan.failures.map((f) => `${f.kind}${f.database ? ` '${f.database}'` : ''}: ${f.error?.message ?? 'failed'}`),
      dumpsDir: loaded.paths.dumpsDir,
      freeBytes: free,
      estimatedBytes: last ? known.reduce((n, r) => n + (r.lastBytes ?? 0), 0) : undefined,
      estimateBasis: last ? `${known.length} of ${rows.length} dumps as big as in run ${last.runId}${known.length < rows.length ? '; the others have no earlier dump' : ''}` : undefined,
    };
  } finally {
    await closeSessions(plan.sessions, log);
  }
}

/** Where the engine would put the backup, in its own words. */
export function engineTarget(loaded: LoadedConfig, engine: EngineName): string {
  const c = loaded.config;
  switch (engine) {
    case 'restic':
      return `restic repository ${c.restic.repository ?? '(restic.repository not set)'}`;
    case 'borg':
      return `borg repository ${c.borg.repository ?? '(borg.repository not set)'}`;
    case 'duplicity':
      return `duplicity target ${c.duplicity.target ?? '(duplicity.target not set)'}`;
    case 'bacula':
      return `Bacula: the director's job ${c.bacula.job} for client ${c.bacula.client} runs the hooks (apiscp-backup run does not back up)`;
    default:
      return 'none: dumps only, in dumps.dir (your own backup software picks them up)';
  }
}

/** The plan as an admin reads it: servers, each site's databases with lock mode and size, space, target. */
export function describePlan(view: PlanView, target: string, verb: string): string[] {
  const lines: string[] = [`${verb}: nothing will be written (dry run)`];
  for (const s of view.servers) {
    lines.push(`  ${s.kind}: ${s.reached ? `server ${s.version ?? '?'}, ${view.listed[s.kind] ?? 0} database(s) on it` : `NOT REACHED: ${s.error ?? 'no answer'}`} (${s.expected})`);
  }
  if (view.servers.length === 0) lines.push('  no database server is enabled or installed');
  const bySite = new Map<string, PlannedRow[]>();
  for (const r of view.rows) bySite.set(r.site, [...(bySite.get(r.site) ?? []), r]);
  const sites = [...bySite.keys()].sort((a, b) => (a === SERVER_SITE ? 1 : b === SERVER_SITE ? -1 : a.localeCompare(b, 'en', { numeric: true })));
  for (const site of sites) {
    lines.push(`  ${site}:`);
    for (const r of bySite.get(site)!) {
      const name = r.database ?? `(${r.object})`;
      lines.push(`    ${r.kind.padEnd(10)} ${name.padEnd(28)} ${(r.lockMode ?? '-').padEnd(18)} ${r.lastBytes === undefined ? 'new' : `~${sizeIn(r.lastBytes, 1024)}`}`);
    }
  }
  for (const f of view.failures) lines.push(`  problem: ${f}`);
  const est = view.estimatedBytes === undefined ? 'no earlier run to estimate from' : `about ${sizeIn(view.estimatedBytes, 1024)} (${view.estimateBasis})`;
  lines.push(`  dumps: ${view.rows.length} into ${view.dumpsDir}; ${est}; ${view.freeBytes === undefined ? 'free space unknown' : `${sizeIn(view.freeBytes, 1024)} free`}`);
  lines.push(`  backup: ${target}`);
  return lines;
}

/** The engine's repository as `config validate --connect` reports it: how many backups, the newest. */
export async function probeEngine(loaded: LoadedConfig, log: Logger, signal: AbortSignal, name: EngineName): Promise<{ ok: boolean; text: string; backups?: BackupPoint[] }> {
  const engine = getEngine(name);
  if (!engine.list) return { ok: true, text: `engine ${name}: no repository of its own to reach` };
  try {
    const { sources, excludes } = await expandBackupPaths(loaded.paths);
    const ectx = { loaded, log, signal, sources, excludes };
    await engine.check(ectx);
    const backups = await engine.list(ectx);
    const newest = backups[0];
    return { ok: true, backups, text: `${engineTarget(loaded, name)}: reached, ${backups.length} backup(s) of this server${newest ? `, newest ${newest.id} at ${newest.time}` : ''}` };
  } catch (err) {
    if (!(err instanceof BackupError)) throw err;
    return { ok: false, text: `${engineTarget(loaded, name)}: ${err.message}` };
  }
}
