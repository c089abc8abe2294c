import { rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from '../../../log.js';
import type { Compression, DumpFile } from '../../../model/kind.js';
import { RestoreError } from '../../../errors.js';
import { makeTempDir } from '../../../private-dir.js';
import { cmd } from '../../../proc/command.js';
import { pipeToFile } from '../../../proc/pipeline.js';
import { isExecutable, whichSystem } from '../../../proc/which.js';
import { decompressorCommand } from '../../../dumps/compress.js';
import { altersDatabase, retargetIndex } from './database-props.js';
import type { DumpIndex } from './dump-index.js';
import { readDumpMap } from './dump-map.js';
import { loadSqlDumpParallel, mapSqlDump, type RowCharset } from './parallel.js';
import { resolveWireTarget, WireSink } from './wire.js';

// The MariaDB restore's loader, one module: a dump into one database over several connections
// where the dump's map proves where each statement ends (parallel.ts: the schema through a client,
// the rows over protocol connections, wire.ts, or clients), else through one client as it is, the
// plain pipe that stays its fallback. The map comes from beside the dump (dump-map.ts, written at
// dump time) or from a pass over it (dump-index.ts on lexer.ts). Its correctness tests are
// test/kinds/mysql/load/.

export type { DumpIndex, DumpSegment } from './dump-index.js';
/** The dump side: the map built as the dump streams by, kept beside it (DumpSpec.streamCheck's sidecar). */
export { MAP_SUFFIX, withDumpMap } from './dump-map.js';
/** The dumped database's character set and collation: recorded at dump time, else read from the map's ALTER DATABASE lines. */
export { propsFromDump, propsOfDetails, type DatabaseProps } from './database-props.js';

/** How the loader reaches the server: the client and its option file, as the session opened them. */
export interface LoadTarget {
  /** The mariadb client's path (my_print_defaults is looked for beside it). */
  readonly client: string;
  /** The 0600 option file with the session's credentials (--defaults-extra-file). */
  readonly optionFile: string;
  /** databases.mysql.max_allowed_packet ("1G"). */
  readonly maxAllowedPacket: string;
  readonly secrets: readonly string[];
}

export interface DumpLoader {
  /** Start reading `dump`'s map (beside a sha256 check of the file, say); a later call for another dump stops it. */
  prefetch(dump: DumpFile, signal?: AbortSignal): void;
  /** The dump's map: prefetched, else read now (its DEFINERs, its ALTER DATABASE lines). */
  mapOf(dump: DumpFile, signal?: AbortSignal): Promise<DumpIndex>;
  /** Load `dump` into `database` (which exists and is empty). */
  load(database: string, dump: DumpFile, target: LoadTarget, signal?: AbortSignal): Promise<void>;
  /** Stop any map still being read. */
  close(): Promise<void>;
}

/** One loader per restore session: `connections` is restore.connections (1: one client reads the stream). */
export function openLoader(options: { readonly connections: number; readonly log: Logger }): DumpLoader {
  const log = options.log;
  // The dump's map, read once: its DEFINERs for the accounts, and its statements' places for
  // the parallel load. prefetch() starts it beside the restore's sha256 check of the file.
  let mapped: { readonly path: string; readonly index: Promise<DumpIndex>; readonly stop: AbortController } | undefined;
  const startMap = (dump: DumpFile, signal?: AbortSignal): void => {
    mapped?.stop.abort();
    const stop = new AbortController();
    const stopping = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
    // The map written beside the dump at dump time (dump-map.ts), else a pass over the dump.
    const index = dump.map
      ? readDumpMap(dump.map).then((index) => {
          log.debug('restore: the dump-time map of the dump', { dump: dump.path, map: dump.map!.path, tables: index.segments.filter((x) => x.kind === 'rows').length });
          return index;
        }, (err: unknown) => {
          log.warn(`restore: the map beside ${dump.path} cannot be used (${err instanceof Error ? err.message : String(err)}); reading the dump for it instead`);
          return mapSqlDump(dump.path, packing(dump), stopping);
        })
      : mapSqlDump(dump.path, packing(dump), stopping);
    index.catch(() => undefined); // seen where it is awaited
    mapped = { path: dump.path, index, stop };
  };
  return {
    prefetch: startMap,
    mapOf(dump, signal) {
      if (mapped?.path !== dump.path) startMap(dump, signal);
      return mapped!.index;
    },
    async close() {
      if (mapped) {
        mapped.stop.abort();
        await mapped.index.catch(() => undefined);
        mapped = undefined;
      }
    },
    async load(database, dump, target, signal) {
      // The map of the dump (prefetched, or read by the accounts' work), for the parallel load;
      // one written at dump time is read now when nothing prefetched it (restore site does not).
      // A safety dump loaded back after a failure is another file.
      // Loaded under another name than dumped: its ALTER DATABASE statements are aimed at the new
      // name (database-props.ts), which takes the map, so the mapped path (one connection or more).
      const renamed = dump.database !== undefined && dump.database !== database ? dump.database : undefined;
      if (mapped?.path !== dump.path && ((dump.map && options.connections > 1) || renamed !== undefined)) startMap(dump, signal);
      const ready = mapped?.path === dump.path ? mapped : undefined;
      if (!ready) mapped?.stop.abort();
      mapped = undefined;
      const args = [
        `--defaults-extra-file=${target.optionFile}`,
        '--batch',
        '--default-character-set=utf8mb4',
        // The client strips comments by default: those inside routine and trigger bodies too.
        '--comments',
        `--max-allowed-packet=${target.maxAllowedPacket}`,
        // One argv word: a name like '-x' or 'a b' is a name here, never an option.
        `--database=${database}`,
      ];
      // A big dump loads near myloader's speed only over several connections (one stream is far
      // slower: docs/performance.md, restore_vs_myloader).
      if (options.connections > 1 || renamed !== undefined) {
        // The rows over protocol connections where they can connect as the client does.
        const wire = await resolveWireTarget(whichSystem('my_print_defaults') ?? sibling(target.client, 'my_print_defaults'), target.optionFile, signal);
        const doing = `loading ${dump.path}`;
        const openRows = 'target' in wire ? (charset: RowCharset) => WireSink.open(wire.target, database, doing, packetBytes(target.maxAllowedPacket), charset) : undefined;
        const mappedIndex = await ready?.index;
        // A file the lexer cannot prove goes through one client as it is: its ALTER DATABASE lines
        // cannot be aimed at the new name, and loaded as they are they would alter the original.
        if (mappedIndex?.serial !== undefined && renamed !== undefined && altersDatabase(mappedIndex, renamed)) {
          throw new RestoreError(
            `cannot load the dump of '${renamed}' under the name '${database}': it sets the database's collation around its routines (ALTER DATABASE \`${renamed}\`), and its statements cannot be proven apart (${mappedIndex.serial}) to aim those at '${database}'; restore it under its own name, or load it by hand`,
            { database },
          );
        }
        const index = mappedIndex && renamed !== undefined ? retargetIndex(mappedIndex, renamed, database) : mappedIndex;
        const result = await loadSqlDumpParallel({ file: dump.path, compression: packing(dump), client: cmd(target.client, args), connections: Math.max(1, options.connections), openRows, signal, secrets: target.secrets, index });
        const why = 'unsupported' in wire ? wire.unsupported : result.protocolRefused;
        if (result.serial !== undefined) log.info(`restore of '${database}': the dump loaded through one client as it is (${result.serial})`);
        else if (why !== undefined) log.info(`restore of '${database}': rows loaded by ${options.connections} mariadb clients, not protocol connections (${why}); the same result, more CPU`);
        return;
      }
      // One stream needs no map: a prefetch still reading it is stopped.
      ready?.stop.abort();
      await ready?.index.catch(() => undefined);
      const scratch = await makeTempDir('asb-myload-');
      try {
        await pipeToFile([decompressorCommand(packing(dump), dump.path), cmd(target.client, args)], join(scratch, 'out'), { signal, secrets: target.secrets });
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
    },
  };
}

/** "1G", "512M", "65536" → bytes (validated when the session opened). */
export function packetBytes(size: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(size);
  const unit = { '': 1, K: 1 << 10, M: 1 << 20, G: 1 << 30 }[(m?.[2] ?? '').toUpperCase() as '' | 'K' | 'M' | 'G'];
  return m ? Number(m[1]) * unit : 1 << 30;
}

/** A tool installed beside the client (a MariaDB under /opt or /usr/local). */
function sibling(client: string, name: string): string | undefined {
  const file = join(dirname(client), name);
  return isExecutable(file) ? file : undefined;
}

function packing(dump: DumpFile): Compression {
  return dump.compression === 'internal' ? 'none' : dump.compression;
}
