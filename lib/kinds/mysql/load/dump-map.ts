import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import type { StreamCheck } from '../../../model/kind.js';
import { SqlDumpIndexer, type DumpIndex, type DumpSegment } from './dump-index.js';

/**
 * The parallel loader's map of a dump (load/dump-index.ts), written beside the dump at dump
 * time as `<dump>.map` and named in the manifest with its sha256. A restore then starts loading
 * after the dump's sha256 check instead of after a pass of its own over the whole file (the
 * bench's 1.1 GB database: 0.8 s and 1 s of zstd and 0.8 s of Node before the first INSERT).
 * The indexer rides on the dump's streaming check (~0.2 s of Node per GB); a restore that finds
 * no map, or one that does not match its sha256, maps the dump itself as before.
 */
export const MAP_SUFFIX = '.map';

/**
 * Dumps smaller than this get no map: their tables load on one connection anyway (4 MiB is the
 * loader's split size) and mapping them at restore takes milliseconds; a server of hundreds of
 * small sites does not get a file more per database. Nor does a dump whose last one was small
 * (run-dumps.ts SMALL_DUMP_BYTES, compressed): it is not even indexed.
 */
export const MAP_MIN_BYTES = 4 << 20;

/** The dump's trailer check, with the indexer fed the same chunks; its sidecar is the map. */
export function withDumpMap(check: StreamCheck, minBytes = MAP_MIN_BYTES): StreamCheck {
  const indexer = new SqlDumpIndexer();
  let index: DumpIndex | undefined;
  return {
    update(chunk) {
      check.update(chunk);
      indexer.feed(chunk);
    },
    finish(file, compression) {
      check.finish(file, compression);
      index = indexer.finish();
    },
    sidecar() {
      return index && index.bytes >= minBytes ? { suffix: MAP_SUFFIX, data: encodeDumpMap(index) } : undefined;
    },
  };
}

const FORMAT = 'apiscp-backup mysql dump map';
/**
 * 2: statements found by the lexer (version 1 split at line ends, and could take text inside a
 * routine body or a string for a statement): a version 1 map is refused, the dump re-read.
 */
const VERSION = 2;

const mapSchema = z.object({
  format: z.literal(FORMAT),
  version: z.literal(VERSION),
  serial: z.string().optional(),
  bytes: z.number().int().nonnegative(),
  inserts: z.number().int().nonnegative(),
  finalDelimiter: z.string().min(1),
  header: z.array(z.string()),
  segments: z.array(
    z.union([
      z.object({ kind: z.literal('sql'), text: z.string() }),
      // blocks as [start0, end0, start1, end1, …]: a 1 GB dump has ~17,000 of them.
      z.object({ kind: z.literal('rows'), table: z.string(), blocks: z.array(z.number().int().nonnegative()), bytes: z.number().int().nonnegative(), statements: z.number().int().nonnegative(), serial: z.boolean().optional(), nbe: z.boolean().optional(), multi: z.array(z.number().int().nonnegative()).optional() }),
    ]),
  ),
});

/** JSON; the dump's own bytes (header lines, schema statements) as base64, they need not be UTF-8. */
export function encodeDumpMap(index: DumpIndex): Buffer {
  const doc: z.infer<typeof mapSchema> = {
    format: FORMAT,
    version: VERSION,
    ...(index.serial !== undefined ? { serial: index.serial } : {}),
    bytes: index.bytes,
    inserts: index.inserts,
    finalDelimiter: index.finalDelimiter,
    header: index.header.map((b) => b.toString('base64')),
    segments: index.segments.map((s) =>
      s.kind === 'sql' ? { kind: 'sql' as const, text: s.text.toString('base64') } : { kind: 'rows' as const, table: s.table, blocks: s.blocks.flat(), bytes: s.bytes, statements: s.statements, ...(s.serial ? { serial: true } : {}), ...(s.nbe ? { nbe: true } : {}), ...(s.multi?.length ? { multi: [...s.multi] } : {}) },
    ),
  };
  return Buffer.from(JSON.stringify(doc));
}

export function decodeDumpMap(data: Buffer): DumpIndex {
  const raw: unknown = JSON.parse(data.toString('utf8'));
  const version = (raw as { version?: unknown } | null)?.version;
  if (typeof version === 'number' && version < VERSION) throw new Error(`it is a map of an older format (version ${version}), whose statement places are not trusted`);
  const doc = mapSchema.parse(raw);
  const segments: DumpSegment[] = doc.segments.map((s) => {
    if (s.kind === 'sql') return { kind: 'sql', text: Buffer.from(s.text, 'base64') };
    if (s.blocks.length % 2) throw new Error(`the map of table ${s.table} has an odd number of block offsets`);
    const blocks: [number, number][] = [];
    for (let i = 0; i < s.blocks.length; i += 2) {
      const [start, end] = [s.blocks[i]!, s.blocks[i + 1]!];
      if (end <= start || end > doc.bytes || (blocks.length && start < blocks.at(-1)![1])) throw new Error(`the map of table ${s.table} has a block [${start}, ${end}) out of order or past the dump's ${doc.bytes} bytes`);
      blocks.push([start, end]);
    }
    if (s.multi?.some((k) => k >= blocks.length)) throw new Error(`the map of table ${s.table} names a block it does not have`);
    return { kind: 'rows', table: s.table, blocks, bytes: s.bytes, statements: s.statements, ...(s.serial ? { serial: true } : {}), ...(s.nbe ? { nbe: true } : {}), ...(s.multi?.length ? { multi: s.multi } : {}) };
  });
  return { header: doc.header.map((h) => Buffer.from(h, 'base64')), segments, bytes: doc.bytes, inserts: doc.inserts, finalDelimiter: doc.finalDelimiter, ...(doc.serial !== undefined ? { serial: doc.serial } : {}) };
}

/** The map file of a dump, checked against the sha256 its manifest recorded. */
export async function readDumpMap(map: { readonly path: string; readonly sha256: string }): Promise<DumpIndex> {
  const data = await readFile(map.path);
  const sha256 = createHash('sha256').update(data).digest('hex');
  if (sha256 !== map.sha256) throw new Error(`${map.path} does not match the sha256 its manifest recorded`);
  return decodeDumpMap(data);
}
