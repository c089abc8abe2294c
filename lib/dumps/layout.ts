import { join } from 'node:path';
import { SERVER_SITE } from '../model/site.js';
import { compressionSuffix } from './compress.js';
import type { Compression, DumpSpec } from '../model/kind.js';

/**
 * <dumps.dir>/<runId>.inprogress/   while a run writes (never backed up, removed if we crash)
 * <dumps.dir>/<runId>/              a finished run: manifest.json + <site>/<kind>/<db>.<ext>
 * <dumps.dir>/latest -> <runId>     the newest complete run
 */
export const RUN_ID = /^\d{8}T\d{6}Z(-\d+)?$/;
export const LATEST = 'latest';
export const MANIFEST = 'manifest.json';

export function newRunId(now = new Date()): string {
  return now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

/** Oldest first. A second run within the same second is `<id>-1`, `-2`…: numbers compare as numbers. */
export function compareRunIds(a: string, b: string): number {
  const [ta = '', na = '0'] = a.split('-');
  const [tb = '', nb = '0'] = b.split('-');
  return ta !== tb ? (ta < tb ? -1 : 1) : Number(na) - Number(nb);
}

/**
 * Database names may hold spaces, quotes, `$()` or slashes: the file name keeps letters, digits
 * and `_.-` and percent-encodes every other UTF-8 byte, so it is safe for every engine and shell
 * and decodes back exactly (the manifest has the real name too).
 */
export function encodeName(name: string): string {
  let out = '';
  for (const byte of Buffer.from(name, 'utf8')) {
    const ch = String.fromCharCode(byte);
    out += /[A-Za-z0-9_-]/.test(ch) || (ch === '.' && out !== '') ? ch : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out || '%00';
}

export function decodeName(encoded: string): string {
  return Buffer.from(encoded.replace(/%([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8');
}

/** Relative path of a dump inside the run directory. */
export function dumpPath(spec: DumpSpec, site: string, compression: Compression): string {
  const suffix = spec.compressible ? compressionSuffix(compression) : '';
  if (spec.database === null) return join(SERVER_SITE, `${spec.kind}-${spec.object}${spec.extension}${suffix}`);
  return join(site, spec.kind, `${encodeName(spec.database)}${spec.extension}${suffix}`);
}
