import type { Inventory } from './inventory.js';
import type { Compression, KindName } from './types.js';

/** manifest.json in every finished run directory: the contract with restore tools and admins. */
export interface ManifestEntry {
  readonly kind: KindName | 'apnscp';
  /** 'server': the server itself could not be reached or listed (no file). */
  readonly object: 'database' | 'users' | 'globals' | 'panel-export' | 'server';
  readonly database: string | null;
  /** 'siteN' or '_server' for databases no site owns. */
  readonly site: string;
  /** Relative to the run directory. Absent when the dump failed. */
  readonly path?: string;
  readonly format: 'sql' | 'custom' | 'panel';
  readonly compression: Compression | 'internal';
  readonly bytes?: number;
  readonly sha256?: string;
  readonly lockMode?: string;
  readonly serverVersion?: string;
  readonly clientVersion?: string;
  readonly startedAt: string;
  readonly durationMs: number;
  readonly status: 'ok' | 'failed';
  /** The server's own inventory of the database at dump time (what `verify` compares a load with). */
  readonly inventory?: Inventory;
  /** Why a database dump has no inventory (the probe failed; the dump itself is fine). */
  readonly inventoryError?: string;
  /** For failures: one line, then the command and stderr tail. */
  readonly error?: { readonly message: string; readonly command?: string; readonly exitCode?: number; readonly stderrTail?: string };
}

export interface Manifest {
  readonly version: 1;
  readonly runId: string;
  readonly host: string;
  readonly tool: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly status: 'complete' | 'failed';
  readonly method: 'native' | 'apnscp' | 'both';
  readonly entries: readonly ManifestEntry[];
}
