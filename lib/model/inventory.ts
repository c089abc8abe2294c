import type { Command } from '../proc/command.js';

/**
 * The server's own inventory of one database, recorded in the manifest at dump time so that
 * `verify` can compare what a loaded dump holds with what the server had (a dump that agrees
 * with itself proves nothing). Names are sorted; each category is one kind of object.
 *
 * MySQL/MariaDB categories: tables, views, routines ("PROCEDURE name" / "FUNCTION name"),
 * triggers, events. PostgreSQL: relations ("r schema.name", relkind first), functions
 * ("f schema.name(args)"), types.
 */
export interface Inventory {
  readonly objects: Readonly<Record<string, readonly string[]>>;
  /** PostgreSQL large objects (pg_largeobject_metadata). */
  readonly largeObjects?: number;
  /** Exact row count per table (COUNT(*)), for the tables whose count matches the dump's snapshot. */
  readonly rows: Readonly<Record<string, number>>;
  /**
   * Tables present but without a comparable row count, with the reason: written while the dump
   * ran (MySQL: their count, taken beside the dump, may differ from the dump's snapshot), or
   * larger than the counting limit.
   */
  readonly rowsNotCounted?: Readonly<Record<string, string>>;
  /** 'snapshot': counted in the dump's own snapshot (pg_dump --snapshot); 'beside': right after the dump. */
  readonly rowsFrom: 'snapshot' | 'beside';
  /** Objects deliberately not in the dump (mariadb-dump cannot dump events of some names). */
  readonly skipped?: readonly string[];
  /** What reading the inventory cost, for the performance budget of the dumps. */
  readonly ms: number;
}

/**
 * A per-dump companion that reads the inventory beside the dump. `open` is called right before
 * the dump starts and may hand back a changed dump command (PostgreSQL dumps in the snapshot the
 * probe exported, so both see the same data); `read` runs after the dump tool succeeded.
 */
export interface InventoryProbe {
  readonly command: Command;
  read(dumpStartedAt: Date, signal?: AbortSignal): Promise<Inventory>;
  /** Always called (also after a failed dump): ends the probe's transaction and process. */
  close(): Promise<void>;
}

/** Sorted, duplicate-free names. */
export function sortedNames(names: Iterable<string>): string[] {
  return [...new Set(names)].sort();
}

/** Hex-encoded UTF-8 (the form both kinds' inventory queries print names in) back to text. */
export function fromHex(hex: string): string {
  return Buffer.from(hex, 'hex').toString('utf8');
}
