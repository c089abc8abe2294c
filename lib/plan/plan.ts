import type { LoadedConfig } from '../config/load.js';
import { BackupError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import type { Logger } from '../log.js';
import { SERVER_SITE } from '../model/site.js';
import type { ManifestEntry, ServerRecord } from '../model/manifest.js';
import { durationMs } from '../config/schema.js';
import { warning, WarningCodes, type Warning } from '../warnings.js';
import type { DatabaseKind, DatabaseSession, KindContext, KindName } from '../model/kind.js';
import type { Plan, PlannedDump, SiteLookup } from '../model/plan.js';
import { nameFilter } from './name-filter.js';

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
    // Anything but our own errors is a bug: exit 70 with the stack, never "dump failed".
    if (!(err instanceof BackupError)) throw err;
    const e = err;
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

  const servers: ServerRecord[] = [];
  const listed = new Map<KindName, Set<string>>();
  const warnings: Warning[] = [];
  try {
    await planKinds();
  } catch (err) {
    // A bug or an abort mid-plan: the sessions opened so far still hold credential files.
    await closeSessions(sessions, log);
    throw err;
  }
  return { items, sessions, failures, servers, listed, warnings };

  async function planKinds(): Promise<void> {
    for (const kind of input.kinds) {
      const ctx = { loaded, log: log.child({ kind: kind.name }), signal };
      const expected = kind.expected(ctx);
      if (expected === undefined) {
        log.debug(`${kind.name}: not enabled, or enabled: auto and no server installed: skipped`);
        continue;
      }
      const opened = await openWithRetries(kind, ctx, loaded, log);
      if (opened.session === undefined) {
        servers.push({ kind: kind.name, expected, reached: false, attempts: opened.attempts, error: (opened.error as Error | undefined)?.message ?? 'not opened' });
        failures.push(failure(kind.name, null, opened.error ?? new BackupError(`${kind.name}: the server was expected (${expected}) but not opened`, ExitCode.DUMP_FAILED)));
        continue;
      }
      const session = opened.session;
      servers.push({ kind: kind.name, expected, reached: true, attempts: opened.attempts, version: session.versions.server });
      if (opened.attempts > 1) {
        const what = `${kind.name}: the server answered only at attempt ${opened.attempts} (${(opened.error as Error | undefined)?.message ?? 'no answer'})`;
        log.warn(what);
        warnings.push(warning(WarningCodes.RETRY_NEEDED, what, { kind: kind.name }));
      }
      sessions.push(session);
      const globs = kind.nameGlobs(loaded);
      const wanted = nameFilter(globs.include, globs.exclude);
      try {
        for (const spec of await session.planServerWide(signal)) items.push({ spec, site: SERVER_SITE, session });
      } catch (err) {
        failures.push(failure(kind.name, null, err, kind.serverWide));
      }
      let names: string[];
      try {
        const all = await session.listDatabases(signal);
        listed.set(kind.name, new Set(all));
        names = all.filter(wanted);
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
  }
}

/** End every session of a plan; a session's temporary files hold credentials, so one that stays is said. */
export async function closeSessions(sessions: readonly DatabaseSession[], log: Logger): Promise<void> {
  await Promise.all(sessions.map((s) => s.close().catch((e: unknown) => log.warn(`${s.kind}: cannot remove the session's temporary credentials files: ${(e as Error).message}`))));
}

/**
 * Open a kind's session, trying again `dumps.retries` times `dumps.retry_wait` apart: a server
 * restarting at night (logrotate, a package update) answers a few seconds later. The last error
 * is kept: it says why the server did not answer, or why a retry was needed.
 */
async function openWithRetries(kind: DatabaseKind, ctx: KindContext, loaded: LoadedConfig, log: Logger): Promise<{ session?: DatabaseSession; attempts: number; error?: unknown }> {
  const attempts = 1 + loaded.config.dumps.retries;
  const waitMs = durationMs(loaded.config.dumps.retry_wait);
  let error: unknown;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      const session = await kind.open(ctx);
      if (session) return { session, attempts: attempt, error };
      return { attempts: attempt, error: error ?? new BackupError(`${kind.name}: expected but the kind reported itself disabled`, ExitCode.DUMP_FAILED) };
    } catch (err) {
      if (!(err instanceof BackupError) || ctx.signal?.aborted) throw err;
      error = err;
      if (attempt < attempts) {
        log.info(`${kind.name}: ${err.message}; trying again in ${Math.round(waitMs / 1000)}s (dumps.retries)`);
        await sleep(waitMs, ctx.signal);
      }
    }
  }
  return { attempts, error };
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
