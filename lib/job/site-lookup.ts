import type { LoadedConfig } from '../config/load.js';
import type { Logger } from '../log.js';
import { openPanel } from '../panel/cpcmd.js';
import { mapDatabasesToSites } from '../panel/sites.js';
import { kindByName } from '../kinds/index.js';
import type { SiteLookup } from '../model/plan.js';

/**
 * Which site owns each database. The panel knows (cpcmd, one call per site and kind). When the
 * panel cannot say, the kind may read it from the server's files (DatabaseKind.siteOnDisk:
 * MariaDB's data directory symlinks into the site's shadow). What neither knows goes under `_server`.
 */
export async function buildSiteLookup(loaded: LoadedConfig, log: Logger, signal?: AbortSignal): Promise<SiteLookup> {
  const panel = openPanel(loaded.config, { log, signal });
  let map: Awaited<ReturnType<typeof mapDatabasesToSites>> | undefined;
  if (panel && loaded.config.databases.method !== 'apnscp') {
    map = await mapDatabasesToSites(panel, { concurrency: loaded.config.panel.concurrency, log, signal });
  }
  return (kind, database) => map?.[kind].get(database) || kindByName(kind).siteOnDisk?.(loaded, database);
}
