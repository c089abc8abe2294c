import { open } from 'node:fs/promises';

/** The last `bytes` bytes of a file, as UTF-8 text (a dump's trailer, a tool's stderr). */
export async function readFileTail(path: string, bytes: number): Promise<string> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, bytes);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    return buffer.toString('utf8');
  } finally {
    await handle.close();
  }
}
