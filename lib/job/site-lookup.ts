import { readlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { LoadedConfig } from '../config/load.js';
import { underRoot } from '../config/paths.js';
import type { Logger } from '../log.js';
import { openPanel } from '../panel/cpcmd.js';
import { mapDatabasesToSites } from '../panel/sites.js';
import { siteInPath } from '../model/site.js';
import type { SiteLookup } from '../model/plan.js';

/**
 * Which site owns each database. The panel knows (cpcmd, one call per site and kind). When the
 * panel cannot say, a MySQL database's directory is a symlink into its site's shadow
 * (/var/lib/mysql/<db> → /home/virtual/siteN/shadow/var/lib/mysql/<db>): free to read.
 * What neither knows goes under `_server`.
 */
export async function buildSiteLookup(loaded: LoadedConfig, log: Logger, signal?: AbortSignal): Promise<SiteLookup> {
  const panel = openPanel(loaded.config, { log, signal });
  let map: Awaited<ReturnType<typeof mapDatabasesToSites>> | undefined;
  if (panel && loaded.config.databases.method !== 'apnscp') {
    map = await mapDatabasesToSites(panel, { concurrency: loaded.config.panel.concurrency, log, signal });
  }
  const datadir = underRoot(loaded.paths.root, '/var/lib/mysql');
  return (kind, database) => {
    const owner = map?.[kind].get(database);
    if (owner) return owner;
    if (kind === 'mysql' && /^[A-Za-z0-9_]+$/.test(database)) return siteFromSymlink(join(datadir, database));
    return undefined;
  };
}

function siteFromSymlink(path: string): string | undefined {
  try {
    return siteInPath(readlinkSync(path));
  } catch {
    return undefined;
  }
}
