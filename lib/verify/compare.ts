import type { Inventory } from '../model/inventory.js';

/** Singular names for messages: "table 'posts' missing". */
const NOUN: Record<string, string> = {
  tables: 'table',
  views: 'view',
  routines: 'routine',
  triggers: 'trigger',
  events: 'event',
  relations: 'relation',
  functions: 'function',
  types: 'type',
  database: 'database property',
};
const MAX_NAMES = 5;

/**
 * What differs between the inventory the server had at dump time and the one read from the
 * loaded copy: missing and unexpected objects per category, large objects, and rows of every
 * table the dump-time inventory counted. Empty when they agree.
 */
export function compareInventories(expected: Inventory, loaded: Inventory): string[] {
  const problems: string[] = [];
  const skipped = new Set(expected.skipped ?? []);
  for (const [category, names] of Object.entries(expected.objects)) {
    if (skipped.has(category)) continue;
    const have = new Set(loaded.objects[category] ?? []);
    const want = new Set(names);
    const noun = NOUN[category] ?? category;
    const missing = names.filter((n) => !have.has(n));
    const extra = [...have].filter((n) => !want.has(n));
    if (missing.length) problems.push(`${noun}${missing.length > 1 ? 's' : ''} missing after load: ${list(missing)}`);
    if (extra.length) problems.push(`${noun}${extra.length > 1 ? 's' : ''} the server did not have: ${list(extra)}`);
  }
  if (expected.largeObjects !== undefined && expected.largeObjects !== loaded.largeObjects) {
    problems.push(`large objects: ${expected.largeObjects} at dump time, ${loaded.largeObjects ?? 0} loaded`);
  }
  const rowDiffs: string[] = [];
  for (const [table, rows] of Object.entries(expected.rows)) {
    const got = loaded.rows[table];
    if (got === undefined) continue; // the table itself is reported missing above
    if (got !== rows) rowDiffs.push(`'${table}' ${rows} at dump time, ${got} loaded`);
  }
  if (rowDiffs.length) problems.push(`rows differ: ${rowDiffs.slice(0, MAX_NAMES).join('; ')}${rowDiffs.length > MAX_NAMES ? `; … ${rowDiffs.length - MAX_NAMES} more` : ''}`);
  return problems;
}

function list(names: readonly string[]): string {
  const shown = names.slice(0, MAX_NAMES).map((n) => `'${n}'`).join(', ');
  return names.length > MAX_NAMES ? `${shown} and ${names.length - MAX_NAMES} more` : shown;
}
