import type { SiteLookup } from '../model/plan.js';
import { warning, WarningCodes, type Warning } from '../warnings.js';
import { SERVER_SITE } from '../model/site.js';
import type { Manifest, ManifestEntry, MissingDatabase } from '../model/manifest.js';
import type { KindName } from '../model/kind.js';

export interface AccountingInput {
  /** The newest complete run before this one. */
  readonly previous: Manifest | undefined;
  readonly entries: readonly ManifestEntry[];
  /** Kinds this run expected (enabled, or auto and installed). */
  readonly expected: ReadonlySet<KindName>;
  /** Per kind whose server answered: every database it lists, before include/exclude. */
  readonly listed: ReadonlyMap<KindName, ReadonlySet<string>>;
  /** Which site the panel (or the MySQL data directory) says owns a database now. */
  readonly siteOf: SiteLookup;
}

/**
 * Every database of the previous complete run is accounted for: dumped again (ok or failed), or
 * named here with the reason it is not. A database the server and the panel both no longer list
 * went with its site: informational. One the server lost while the panel still lists it, or one
 * no panel can vouch for, is a warning. A server that did not answer already failed the run.
 */
export function accountForDatabases(input: AccountingInput): { missing: MissingDatabase[]; warnings: Warning[] } {
  const now = new Set(input.entries.filter((e) => e.database !== null).map((e) => `${e.kind}\0${e.database}`));
  const missing: MissingDatabase[] = [];
  const warnings: Warning[] = [];
  for (const e of input.previous?.entries ?? []) {
    if (e.object !== 'database' || e.database === null || e.status !== 'ok' || e.kind === 'apnscp') continue;
    if (now.has(`${e.kind}\0${e.database}`)) continue;
    const kind = e.kind;
    const database = e.database;
    const base = { kind, database, site: e.site, lastDumpRun: input.previous!.runId };
    const name = `${kind} '${database}'${e.site === SERVER_SITE ? '' : ` (${e.site})`}`;
    const listed = input.listed.get(kind);
    if (!input.expected.has(kind)) {
      missing.push({ ...base, reason: 'excluded' });
      continue;
    }
    if (!listed) {
      missing.push({ ...base, reason: 'unreachable' });
      continue;
    }
    if (listed.has(database)) {
      missing.push({ ...base, reason: 'excluded' });
      continue;
    }
    const owner = input.siteOf(kind, database);
    if (owner === undefined && e.site !== SERVER_SITE) {
      missing.push({ ...base, reason: 'gone' });
      continue;
    }
    missing.push({ ...base, reason: 'missing' });
    const why = owner ? `the panel still lists it for ${owner}` : 'no panel says it was deleted';
    warnings.push(warning(WarningCodes.DATABASE_MISSING, `${name} was in run ${input.previous!.runId} but the server no longer lists it (${why}); its last dump is kept`, { kind, database, site: e.site }));
  }
  const hadSome = (input.previous?.entries ?? []).some((e) => e.object === 'database' && e.status === 'ok');
  const hasNone = !input.entries.some((e) => e.object === 'database' && e.status === 'ok');
  if (hadSome && hasNone && input.entries.every((e) => e.status === 'ok')) {
    warnings.push(warning(WarningCodes.NO_DATABASES, `this run dumped no database, run ${input.previous!.runId} had ${input.previous!.entries.filter((e) => e.object === 'database' && e.status === 'ok').length}`));
  }
  return { missing, warnings };
}
