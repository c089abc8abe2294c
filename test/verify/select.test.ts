/** The rotation and the inventory comparison, as plain functions (the CLI tests cover the rest). */
import { describe, expect, it } from 'vitest';
import type { Inventory } from '../../lib/model/inventory.js';
import type { ManifestEntry } from '../../lib/model/manifest.js';
import { parseMysqlInventory } from '../../lib/kinds/mysql/inventory.js';
import { compareInventories } from '../../lib/model/inventory-compare.js';
import { chooseEntries, rotationLength } from '../../lib/model/verify-rotation.js';
import type { DatabaseVerification, VerifyState } from '../../lib/model/verify-state.js';

const entry = (database: string, status: 'ok' | 'failed' = 'ok'): ManifestEntry => ({
  kind: 'mysql', object: 'database', database, site: '_server', format: 'sql', compression: 'zstd', startedAt: '', durationMs: 0, status, path: `${database}.sql.zst`,
});

describe('rotation', () => {
  it('covers D databases in ceil(D / N) verifications, never-verified first, then oldest attempt', () => {
    const entries = ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((d) => entry(d));
    let state: VerifyState = { version: 1, databases: {} };
    const nights: string[][] = [];
    for (let night = 0; night < rotationLength(entries.length, 3); night++) {
      const chosen = chooseEntries(entries, state, 3).map((e) => e.database!);
      nights.push(chosen);
      const at = new Date(Date.UTC(2026, 0, night + 1)).toISOString();
      const databases: Record<string, DatabaseVerification> = { ...state.databases };
      for (const d of chosen) databases[`mysql:${d}`] = { kind: 'mysql', database: d, site: '_server', runId: 'r', lastAttemptAt: at, outcome: 'ok', problems: [] };
      state = { version: 1, databases };
    }
    expect(nights).toEqual([['a', 'b', 'c'], ['d', 'e', 'f'], ['g', 'a', 'b']]);
    expect(new Set(nights.flat()).size).toBe(7);
    // A database created since goes first.
    expect(chooseEntries([...entries, entry('new')], state, 2).map((e) => e.database)).toEqual(['new', 'c']);
    // Failed dumps have no file to verify; --all takes every good one.
    expect(chooseEntries([entry('x', 'failed'), entry('y')], undefined, 'all').map((e) => e.database)).toEqual(['y']);
  });
});

describe('compareInventories', () => {
  const server: Inventory = {
    objects: { tables: ['orders', 'users'], views: ['v'], events: ['e'] },
    rows: { orders: 10, users: 2 },
    rowsFrom: 'beside',
    ms: 1,
  };
  it('agrees with itself and names what differs', () => {
    expect(compareInventories(server, server)).toEqual([]);
    const loaded: Inventory = { ...server, objects: { tables: ['users', 'extra'], views: ['v'], events: ['e'] }, rows: { users: 1 } };
    expect(compareInventories(server, loaded)).toEqual([
      "table missing after load: 'orders'",
      "table the server did not have: 'extra'",
      "rows differ: 'users' 2 at dump time, 1 loaded",
    ]);
  });
  it('ignores categories the dump skipped on purpose and compares large objects', () => {
    const skipped: Inventory = { ...server, skipped: ['events'], largeObjects: 2 };
    expect(compareInventories(skipped, { ...server, objects: { ...server.objects, events: [] }, largeObjects: 1 })).toEqual(['large objects: 2 at dump time, 1 loaded']);
  });
});

describe('MySQL row counts beside the dump', () => {
  const hex = (s: string): string => Buffer.from(s, 'utf8').toString('hex').toUpperCase();
  it('keeps the count only of tables not written since the second the dump started', () => {
    const start = new Date('2026-12-01T03:00:10.500Z');
    const t = Math.floor(start.getTime() / 1000);
    const rows = [
      ['obj', 'tables', hex('quiet')],
      ['obj', 'tables', hex('busy')],
      ['obj', 'tables', hex('same second')],
      ['obj', 'tables', hex('fresh innodb')],
      ['obj', 'tables', hex('memory')],
      ['rows', hex('quiet'), '5'],
      ['rows', hex('busy'), '7'],
      ['rows', hex('same second'), '1'],
      ['rows', hex('fresh innodb'), '2'],
      ['rows', hex('memory'), '3'],
      ['upd', hex('quiet'), 'InnoDB', String(t - 60), '16384'],
      ['upd', hex('busy'), 'InnoDB', String(t + 3), '16384'],
      ['upd', hex('same second'), 'MyISAM', String(t), '100'],
      ['upd', hex('fresh innodb'), 'InnoDB', '', '16384'],
      ['upd', hex('memory'), 'MEMORY', '', '0'],
    ];
    const inv = parseMysqlInventory(rows, { dumpStartedAt: start, ms: 1 });
    expect(inv.objects.tables).toEqual(['busy', 'fresh innodb', 'memory', 'quiet', 'same second']);
    expect(inv.rows).toEqual({ quiet: 5, 'fresh innodb': 2 });
    expect(inv.rowsNotCounted).toEqual({ busy: 'written while the dump ran', 'same second': 'written while the dump ran', memory: 'MEMORY keeps no update time' });
  });
});
