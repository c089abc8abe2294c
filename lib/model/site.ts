/**
 * Where a dump or a path belongs. ApisCP names each site's directory `siteN` (site1, site12);
 * domain names and `adminN` are symlinks beside it. A glob segment `site*` in a path means
 * these numbered directories only, everywhere (path expansion, the Bacula FileSet).
 */
export const SITE_ID_SOURCE = 'site[0-9]+';
export const SITE_ID = new RegExp(`^${SITE_ID_SOURCE}$`);
/** The glob segment that stands for every siteN directory. */
export const SITE_GLOB = 'site*';
/** Dumps of no site (server-wide exports, databases no site owns) go here. */
export const SERVER_SITE = '_server';

/** The siteN that a path under /home/virtual belongs to (a MySQL datadir symlink's target). */
export function siteInPath(path: string): string | undefined {
  return new RegExp(`/home/virtual/(${SITE_ID_SOURCE})/`).exec(path)?.[1];
}

/** site2 before site10. */
export function bySiteNumber(a: string, b: string): number {
  return Number(a.slice(4)) - Number(b.slice(4));
}
