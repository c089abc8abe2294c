import type { Inventory } from './inventory.js';

/**
 * The one comparison of a loaded database with the inventory its server had at dump time:
 * `verify` makes it after loading a dump into a throwaway server, `restore db` and `restore site`
 * after loading one into the real server, before they report success. A dump that agrees with
 * itself (its trailer, its sha256) can still hold less than the server had; only this sees it.
 */

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

/** What one comparison looked at and found: `problems` empty when they agree. */
export interface InventoryComparison {
  readonly problems: string[];
  /** What was not compared and why (rows of tables written while the dump ran, or too large to count). */
  readonly notes: string[];
  /** Objects compared per category (the dump-time count; skipped categories left out). */
  readonly objects: Readonly<Record<string, number>>;
  /** Tables whose exact row count was compared, and the rows they hold at dump time. */
  readonly tablesCounted: number;
  readonly rows: number;
}

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

/** compareInventories, with what was compared and what was not (for the admin and the journals). */
export function compareWithInventory(expected: Inventory, loaded: Inventory): InventoryComparison {
  const skipped = new Set(expected.skipped ?? []);
  const byReason = new Map<string, string[]>();
  for (const [table, why] of Object.entries(expected.rowsNotCounted ?? {})) byReason.set(why, [...(byReason.get(why) ?? []), table]);
  const notes = [...byReason].map(([why, tables]) => `rows not compared for ${tables.length} table(s), ${why}: ${tables.sort().slice(0, MAX_NAMES).join(', ')}${tables.length > MAX_NAMES ? ', …' : ''}`);
  const counted = Object.values(expected.rows);
  return {
    problems: compareInventories(expected, loaded),
    notes,
    objects: Object.fromEntries(Object.entries(expected.objects).filter(([c]) => !skipped.has(c)).map(([c, names]) => [c, names.length])),
    tablesCounted: counted.length,
    rows: counted.reduce((a, b) => a + b, 0),
  };
}

/** "2 tables, 1 view, 1 trigger; exact rows of 2 tables (44 rows)": what a comparison covered. */
export function describeComparison(c: InventoryComparison): string {
  const objects = Object.entries(c.objects)
    .filter(([category, n]) => n > 0 && category !== 'database')
    .map(([category, n]) => `${n} ${n === 1 ? (NOUN[category] ?? category) : category}`);
  const props = c.objects.database ? `${c.objects.database} database propert${c.objects.database === 1 ? 'y' : 'ies'}` : undefined;
  return [[...objects, ...(props ? [props] : [])].join(', ') || 'no objects', `exact rows of ${c.tablesCounted} table${c.tablesCounted === 1 ? '' : 's'} (${c.rows} row${c.rows === 1 ? '' : 's'})`].join('; ');
}

function list(names: readonly string[]): string {
  const shown = names.slice(0, MAX_NAMES).map((n) => `'${n}'`).join(', ');
  return names.length > MAX_NAMES ? `${shown} and ${names.length - MAX_NAMES} more` : shown;
}
