import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';

/** Size and sha256 of what the stages wrote, read back (from the page cache). */
export async function hashFile(handle: FileHandle): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  const bytes = await eachChunk(handle, (chunk) => hash.update(chunk));
  return { bytes, sha256: hash.digest('hex') };
}

/**
 * Every byte of an open file from its start to its end, in reads of up to 1 MB into one buffer:
 * a chunk is valid only during the onChunk call. The buffer is sized to the file: a 1 MB buffer
 * for each of 1,000 dumps of a few KB kept the GC busy. Returns the bytes read.
 */
export async function eachChunk(handle: FileHandle, onChunk: (chunk: Buffer) => void): Promise<number> {
  const { size } = await handle.stat();
  const buffer = Buffer.allocUnsafe(Math.max(4096, Math.min(1024 * 1024, size + 1)));
  let bytes = 0;
  for (;;) {
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, bytes);
    if (bytesRead === 0) return bytes;
    onChunk(buffer.subarray(0, bytesRead));
    bytes += bytesRead;
  }
}
