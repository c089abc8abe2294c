import { distance } from 'fastest-levenshtein';
import type { LoadedConfig } from '../config/load.js';
import { listRuns } from '../dumps/retention.js';
import { RestoreError, UsageError } from '../errors.js';
import { readManifest } from '../restore/source.js';

/** A database name as the local runs hold it, with the runs (newest first) that have a good dump of it. */
export interface KnownDatabase {
  readonly kind: string;
  readonly database: string;
  readonly site: string;
  readonly runs: string[];
}

/** Every database with a good dump in a complete local run. */
export function knownDatabases(loaded: LoadedConfig): KnownDatabase[] {
  const byKey = new Map<string, KnownDatabase>();
  for (const r of listRuns(loaded.paths.dumpsDir)) {
    if (r.status !== 'complete') continue;
    for (const e of readManifest(r.dir)?.entries ?? []) {
      if (e.object !== 'database' || e.status !== 'ok' || e.database === null) continue;
      const key = `${e.kind}\0${e.database}`;
      const k = byKey.get(key) ?? { kind: e.kind, database: e.database, site: e.site, runs: [] };
      k.runs.push(r.runId);
      byKey.set(key, k);
    }
  }
  return [...byKey.values()];
}

/** The messages a restore gives when the name is in no run it looked at (lib/restore). */
const NOT_FOUND = /^unknown database '|no local run holds what you asked for|^no complete local run holds what you asked for/;

/**
 * A typo in `restore db NAME` is a failed restore (exit 8) that says which names come close and
 * which runs hold them, instead of "no run holds what you asked for". Other errors pass through.
 */
export function unknownDatabase(loaded: LoadedConfig, name: string, err: unknown): unknown {
  if (!(err instanceof UsageError) || !NOT_FOUND.test(err.message)) return err;
  const known = knownDatabases(loaded);
  if (known.some((k) => k.database === name)) return err;
  const near = closest(name, known);
  const lines = [`no local run holds a database named '${name}'`];
  if (near.length) {
    lines.push('closest names (restore db NAME; --from RUN for an older run):');
    for (const k of near) lines.push(`  ${k.database}  (${k.kind}, ${k.site}): run${k.runs.length > 1 ? 's' : ''} ${k.runs.slice(0, 3).join(', ')}${k.runs.length > 3 ? `, … (${k.runs.length} runs)` : ''}`);
  } else {
    lines.push(known.length ? `nothing close among the ${known.length} database(s) the local runs hold: \`apiscp-backup list RUN\` shows a run's databases` : 'the local runs hold no database dumps: `apiscp-backup list` shows the runs and backups');
  }
  return new RestoreError(lines.join('\n'), { database: name });
}

/** The names nearest to `name`: a small edit away, or containing it (or it them), best first. */
function closest(name: string, known: KnownDatabase[]): KnownDatabase[] {
  const scored = known.map((k) => ({ k, d: distance(name.toLowerCase(), k.database.toLowerCase()) }));
  const limit = Math.max(2, Math.floor(name.length / 3));
  return scored
    .filter(({ k, d }) => d <= limit || k.database.toLowerCase().includes(name.toLowerCase()) || name.toLowerCase().includes(k.database.toLowerCase()))
    .sort((a, b) => a.d - b.d || a.k.database.localeCompare(b.k.database))
    .slice(0, 5)
    .map(({ k }) => k);
}

