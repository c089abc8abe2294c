import type { LoadedConfig } from '../config/load.js';
import { BackupError } from '../errors.js';
import type { Logger } from '../log.js';
import { SERVER_SITE } from '../dumps/layout.js';
import type { ManifestEntry } from '../dumps/manifest.js';
import type { DatabaseKind, DatabaseSession, DumpSpec, KindName } from '../dumps/types.js';
import { nameFilter } from './name-filter.js';

/** Which site owns a database: `siteN`, or undefined (it then goes under `_server`). */
export type SiteLookup = (kind: KindName, database: string) => string | undefined;

export interface PlannedDump {
  readonly spec: DumpSpec;
  readonly site: string;
  readonly session: DatabaseSession;
}

export interface Plan {
  readonly items: readonly PlannedDump[];
  /** Sessions to close when the run ends (also after failures). */
  readonly sessions: readonly DatabaseSession[];
  /** Problems found while planning (server down, listing failed): they fail the run. */
  readonly failures: readonly ManifestEntry[];
}

export interface PlanInput {
  readonly loaded: LoadedConfig;
  readonly log: Logger;
  readonly kinds: readonly DatabaseKind[];
  readonly siteOf: SiteLookup;
  readonly signal?: AbortSignal;
}

/**
 * config → plan: open every enabled kind, list its databases, apply include/exclude, decide the
 * lock mode of each database and attach its site. Nothing is written yet.
 */
export async function buildPlan(input: PlanInput): Promise<Plan> {
  const { loaded, log, signal } = input;
  const items: PlannedDump[] = [];
  const sessions: DatabaseSession[] = [];
  const failures: ManifestEntry[] = [];
  const startedAt = new Date().toISOString();
  const failure = (kind: KindName, database: string | null, err: unknown, object: ManifestEntry['object'] = database === null ? 'server' : 'database'): ManifestEntry => {
    const e = err as BackupError;
    log.error(`${kind}${database === null ? '' : ` ${database}`}: ${e.message}`);
    return {
      kind,
      object,
      database,
      site: database === null ? SERVER_SITE : input.siteOf(kind, database) ?? SERVER_SITE,
      format: 'sql',
      compression: 'none',
      startedAt,
      durationMs: 0,
      status: 'failed',
      error: { message: e.message, command: e.context?.command as string | undefined, exitCode: e.context?.exitCode as number | undefined, stderrTail: e.context?.stderrTail as string | undefined },
    };
  };

  for (const kind of input.kinds) {
    let session: DatabaseSession | undefined;
    try {
      session = await kind.open({ loaded, log: log.child({ kind: kind.name }), signal });
    } catch (err) {
      failures.push(failure(kind.name, null, err));
      continue;
    }
    if (!session) {
      log.debug(`${kind.name}: not enabled or not found, skipped`);
      continue;
    }
    sessions.push(session);
    const cfg = kind.name === 'mysql' ? loaded.config.databases.mysql : loaded.config.databases.postgresql;
    const wanted = nameFilter(cfg.include, cfg.exclude);
    try {
      for (const spec of await session.planServerWide(signal)) items.push({ spec, site: SERVER_SITE, session });
    } catch (err) {
      failures.push(failure(kind.name, null, err, kind.name === 'mysql' ? 'users' : 'globals'));
    }
    let names: string[];
    try {
      names = (await session.listDatabases(signal)).filter(wanted);
    } catch (err) {
      failures.push(failure(kind.name, null, err));
      continue;
    }
    for (const database of names) {
      try {
        const spec = await session.planDatabase(database, signal);
        items.push({ spec, site: input.siteOf(kind.name, database) ?? SERVER_SITE, session });
      } catch (err) {
        failures.push(failure(kind.name, database, err));
      }
    }
  }
  return { items, sessions, failures };
}
