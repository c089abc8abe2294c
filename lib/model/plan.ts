import type { ManifestEntry, ServerRecord } from './manifest.js';
import type { DatabaseSession, DumpSpec, KindName } from './kind.js';
import type { Warning } from '../warnings.js';

/**
 * What plan/ hands to dumps/ (job/ passes it on): the model both sides share, so neither imports
 * the other.
 */
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
  /** Every server the run expected, and whether it answered. */
  readonly servers: readonly ServerRecord[];
  /** Per kind that answered: every database it lists (before include/exclude), to account for missing ones. */
  readonly listed: ReadonlyMap<KindName, ReadonlySet<string>>;
  /** Non-fatal problems while planning (a retry was needed). */
  readonly warnings: readonly Warning[];
}
