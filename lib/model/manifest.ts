import type { Inventory } from './inventory.js';
import type { Warning } from '../warnings.js';
import type { Compression, KindName } from './kind.js';
import type { BinlogPosition } from './binlog.js';

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
  /** A file written beside the dump for its restore (mysql: the loader's map), relative to the run directory. */
  readonly map?: { readonly path: string; readonly bytes: number; readonly sha256: string };
  readonly lockMode?: string;
  readonly serverVersion?: string;
  readonly clientVersion?: string;
  readonly startedAt: string;
  readonly durationMs: number;
  /**
   * lock-tables dumps (MyISAM/Aria tables): how long the database's tables were locked, i.e.
   * the site could not write them (mariadb-dump's run time, an upper bound).
   */
  readonly lockHeldMs?: number;
  readonly status: 'ok' | 'failed';
  /** MariaDB with log_bin on: the binlog position matching this dump (absent in older manifests, or with binlogs off). */
  readonly binlog?: BinlogPosition;
  /** The server's own inventory of the database at dump time (what `verify` compares a load with). */
  readonly inventory?: Inventory;
  /** Why a database dump has no inventory (the probe failed; the dump itself is fine). */
  readonly inventoryError?: string;
  /** What the kind knows about this dump (tables, engines, events…; `eventsSkipped` when some were left out). */
  readonly details?: Readonly<Record<string, unknown>>;
  /** Non-fatal problems of this dump: the file is good but not everything is in it. */
  readonly warnings?: readonly Warning[];
  /** For failures: one line, then the command and stderr tail. */
  readonly error?: { readonly message: string; readonly command?: string; readonly exitCode?: number; readonly stderrTail?: string };
}

/** The manifest format this code writes; lib/dumps/manifest-file.ts reads it and every older one. */
export const MANIFEST_VERSION = 1;

export interface Manifest {
  readonly version: typeof MANIFEST_VERSION;
  readonly runId: string;
  readonly host: string;
  readonly tool: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly status: 'complete' | 'failed';
  readonly method: 'native' | 'apnscp' | 'both';
  readonly entries: readonly ManifestEntry[];
  /** Each database server the run expected (enabled, or installed under `auto`) and whether it answered. */
  readonly servers?: readonly ServerRecord[];
  /** Databases of the previous complete run that this run has no dump of, and why. */
  readonly missing?: readonly MissingDatabase[];
  /** Run-level warnings (a database missing, a retry that was needed). */
  readonly warnings?: readonly Warning[];
}

export interface ServerRecord {
  readonly kind: KindName;
  /** Why we expected it: 'enabled: true', or the evidence that it is installed. */
  readonly expected: string;
  readonly reached: boolean;
  readonly version?: string;
  /** Connection attempts made (1 = answered at once; more = retried, dumps.retries). */
  readonly attempts: number;
  readonly error?: string;
}

export interface MissingDatabase {
  readonly kind: KindName;
  readonly database: string;
  /** Site of its last dump. */
  readonly site: string;
  /**
   * gone: the server and the panel no longer list it (site or database deleted: informational);
   * excluded: include/exclude now leave it out; missing: the server no longer lists it but the
   * panel still does, or no panel to ask (a warning); unreachable: its server did not answer.
   */
  readonly reason: 'gone' | 'excluded' | 'missing' | 'unreachable';
  /** The run that holds its newest good dump. */
  readonly lastDumpRun?: string;
}
