import { PanelError } from '../errors.js';
import type { Logger } from '../log.js';
import { bySiteNumber, SITE_ID } from '../model/site.js';
import { pool } from '../pool.js';
import type { Cpcmd } from './cpcmd.js';

export interface SiteInfo {
  readonly domain: string | undefined;
  readonly active: boolean | undefined;
}

export interface SiteMap {
  /** Database name → owning siteN. A database missing here goes under `_server`. */
  readonly mysql: Map<string, string>;
  readonly postgresql: Map<string, string>;
  readonly sites: Map<string, SiteInfo>;
  /** Sites whose database lists could not be read (their databases fall back to `_server`). */
  readonly failedSites: readonly string[];
}

export interface MapOptions {
  /** cpcmd calls at once (panel.concurrency): each is a PHP start-up of ~0.3 s. */
  concurrency: number;
  log?: Logger;
  signal?: AbortSignal;
}

/**
 * Ask the panel which site owns each database, so dumps are filed per site. One site failing
 * (a half-deleted account) only costs that site its grouping; listing the sites failing is fatal.
 */
export async function mapDatabasesToSites(cpcmd: Cpcmd, options: MapOptions): Promise<SiteMap> {
  const sites = await listSites(cpcmd, options);
  const mysql = new Map<string, string>();
  const postgresql = new Map<string, string>();
  const failed = new Set<string>();
  const jobs: (() => Promise<void>)[] = [];
  for (const site of sites.keys()) {
    for (const [command, target] of [
      ['mysql:list-databases', mysql],
      ['pgsql:list-databases', postgresql],
    ] as const) {
      jobs.push(async () => {
        try {
          const names = toNames(await cpcmd.json<unknown>([command], { site, signal: options.signal }));
          for (const db of names) {
            const owner = target.get(db);
            if (owner && owner !== site) options.log?.warn(`database ${db} is listed by both ${owner} and ${site}; filing it under ${owner}`);
            else target.set(db, site);
          }
        } catch (err) {
          if (options.signal?.aborted) throw err;
          failed.add(site);
          options.log?.warn(`cannot list ${site}'s databases (${command}); they will be filed under _server`, { site, error: (err as Error).message });
        }
      });
    }
  }
  await pool(jobs, options.concurrency, (job) => job());
  return { mysql, postgresql, sites, failedSites: [...failed].sort(bySiteNumber) };
}

/** `admin:collect` gives domain and state; `admin:get-domains` (older panels) only domains. */
export async function listSites(cpcmd: Cpcmd, options: Pick<MapOptions, 'log' | 'signal'> = {}): Promise<Map<string, SiteInfo>> {
  let raw: Record<string, unknown>;
  let source: string;
  try {
    raw = asObject(await cpcmd.json<unknown>(['admin:collect'], { signal: options.signal }));
    source = 'admin:collect';
  } catch (err) {
    if (options.signal?.aborted) throw err;
    options.log?.warn('cpcmd admin:collect failed; trying admin:get-domains', { error: (err as Error).message });
    raw = asObject(await cpcmd.json<unknown>(['admin:get-domains'], { signal: options.signal }));
    source = 'admin:get-domains';
  }
  const sites = new Map<string, SiteInfo>();
  for (const [key, value] of Object.entries(raw)) {
    // get-domains is keyed by the numeric site id (admins' scripts make siteN of its `N: domain` lines); collect by siteN.
    const id = /^[0-9]+$/.test(key) ? `site${key}` : key;
    if (!SITE_ID.test(id)) {
      options.log?.warn(`ignoring unexpected site key ${JSON.stringify(key)} from cpcmd ${source}`);
      continue;
    }
    const info = typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : { domain: value };
    sites.set(id, {
      domain: typeof info.domain === 'string' ? info.domain : undefined,
      active: typeof info.active === 'boolean' ? info.active : info.active === undefined ? undefined : Boolean(Number(info.active)),
    });
  }
  return new Map([...sites].sort(([a], [b]) => bySiteNumber(a, b)));
}

function asObject(value: unknown): Record<string, unknown> {
  // An empty PHP array encodes as [] (no sites), a keyed one as an object.
  if (Array.isArray(value) && value.length === 0) return {};
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
  throw new PanelError(`expected a list of sites keyed by id, got ${JSON.stringify(value)?.slice(0, 200)}`);
}

/** A PHP list may arrive as an array or, with holes in its keys, as an object. */
function toNames(value: unknown): string[] {
  if (value === null || value === false) return [];
  const items = Array.isArray(value) ? value : typeof value === 'object' ? Object.values(value) : undefined;
  if (!items || !items.every((i) => typeof i === 'string')) throw new Error(`expected a list of database names, got ${JSON.stringify(value)?.slice(0, 200)}`);
  return items as string[];
}
