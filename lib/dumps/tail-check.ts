import { readFile, rm } from 'node:fs/promises';
import { makeTempDir } from '../private-dir.js';
import { join } from 'node:path';
import { MissingDependencyError } from '../errors.js';
import { readFileTail } from '../file-tail.js';
import { cmd } from '../proc/command.js';
import { decompressorCommand } from './compress.js';
import { pipeToFile } from '../proc/pipeline.js';
import { whichSystem } from '../proc/which.js';
import type { Compression, StreamCheck } from '../model/kind.js';

/**
 * Keeps the last `bytes` bytes of a stream (the dump's trailer), for checks made while the dump
 * is written. Each chunk is valid only during update() (the relay's buffer is read into again):
 * its last bytes are copied into one window, no allocation per chunk.
 */
export class StreamTail {
  private readonly window: Buffer;
  private held = 0;

  constructor(private readonly bytes = 4096) {
    this.window = Buffer.alloc(bytes);
  }

  update(chunk: Buffer): void {
    if (chunk.length >= this.bytes) {
      chunk.copy(this.window, 0, chunk.length - this.bytes);
      this.held = this.bytes;
      return;
    }
    const keep = Math.min(this.held, this.bytes - chunk.length);
    this.window.copy(this.window, 0, this.held - keep, this.held);
    chunk.copy(this.window, keep);
    this.held = keep + chunk.length;
  }

  text(): string {
    return this.window.subarray(0, this.held).toString('utf8');
  }
}

/** A StreamCheck that runs `check` on the last `bytes` bytes of the stream. */
export function tailCheck(check: (tailText: string, file: string, compression: Compression) => void, bytes = 4096): StreamCheck {
  const tail = new StreamTail(bytes);
  return { update: (chunk) => tail.update(chunk), finish: (file, compression) => check(tail.text(), file, compression) };
}

/**
 * The last `bytes` bytes of a dump after decompression, as UTF-8 text (a multi-byte character
 * cut at the start shows as U+FFFD, harmless for trailer checks).
 *
 * Dumps run to many GB, so the decompressed stream must never be held in memory: compressed
 * files go through `zstd -dc | tail -c N` joined by a kernel pipe (pipeToFile), and only the
 * tail reaches Node. A corrupt or truncated compressed file makes the decompressor exit non-zero,
 * which surfaces as a CommandError.
 */
export async function readTail(file: string, compression: Compression, bytes = 4096, signal?: AbortSignal): Promise<string> {
  if (compression === 'none') return readFileTail(file, bytes);
  const decompress = decompressorCommand(compression, file);
  const tailBin = whichSystem('tail');
  if (!tailBin) throw new MissingDependencyError('tail', 'coreutils', 'coreutils');
  const dir = await makeTempDir('asb-tail-');
  try {
    const out = join(dir, 'tail');
    await pipeToFile([decompress, cmd(tailBin, ['-c', String(bytes)])], out, { signal });
    return await readFile(out, 'utf8');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
