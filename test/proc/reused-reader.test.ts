import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cmd } from '../../lib/proc/command.js';
import { pipeToReader } from '../../lib/proc/pipeline.js';
import type { ChunkReader } from '../../lib/proc/reused-reader.js';
import { whichSystem } from '../../lib/proc/which.js';

const work = mkdtempSync(join(tmpdir(), 'asb-reader-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const sh = (script: string) => cmd(whichSystem('sh')!, ['-c', script]);
const file = join(work, 'data');
const data = randomBytes(3 << 20);
writeFileSync(file, data);
const sha = (b: Buffer | Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Every chunk: its bytes (copied before the next read, as the contract says) and its memory. */
async function drain(reader: ChunkReader): Promise<{ bytes: Buffer; memories: Set<ArrayBufferLike>; chunks: number }> {
  const parts: Buffer[] = [];
  const memories = new Set<ArrayBufferLike>();
  for await (const chunk of reader) {
    parts.push(Buffer.from(chunk));
    memories.add(chunk.buffer);
  }
  return { bytes: Buffer.concat(parts), memories, chunks: parts.length };
}

const leftovers = (dir: string) => readdirSync(dir).filter((n) => n.startsWith('asb-read-'));

describe('pipeToReader (a child writing into one reused buffer)', () => {
  it('hands over every byte, each read landing in the same buffer, and leaves no socket behind', async () => {
    const before = leftovers(tmpdir()).length;
    const { child, reader } = await pipeToReader(cmd(whichSystem('cat')!, [file]), {}, 64 << 10);
    const got = await drain(reader);
    expect((await child.ended).exitCode).toBe(0);
    expect(got.bytes.length).toBe(data.length);
    expect(sha(got.bytes)).toBe(sha(data));
    expect(got.chunks).toBeGreaterThanOrEqual(48); // 3 MiB through 64 KiB: really many reads
    expect(got.memories.size).toBe(1); // no new Buffer per read
    expect(child.stdout).toBeNull();
    expect(leftovers(tmpdir()).length).toBe(before);
  });

  it('a failing child: the bytes it wrote, then the end; its exit status says how it ended', async () => {
    const { child, reader } = await pipeToReader(sh('printf abc; exit 3'));
    expect((await drain(reader)).bytes.toString()).toBe('abc');
    expect((await child.ended).exitCode).toBe(3);
    expect(child.failure(await child.ended, 'reading').message).toMatch(/^reading: exited with 3/);
  });

  it('closed early: the child writing forever ends (EPIPE), the reader says end, nothing hangs', async () => {
    const { child, reader } = await pipeToReader(cmd(whichSystem('yes')!, []));
    expect((await reader.next())?.length).toBeGreaterThan(0);
    reader.close();
    expect(await reader.next()).toBeUndefined();
    const end = await child.ended;
    expect(end.exitCode === 0 && end.signal === null).toBe(false);
  });

  it('a temp dir too long for a socket name: /dev/shm holds the socket, never a cut-short path', async () => {
    const long = join(work, 'x'.repeat(120));
    mkdirSync(long);
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = long;
    try {
      const shm = leftovers('/dev/shm').length;
      const { child, reader } = await pipeToReader(cmd(whichSystem('cat')!, [file]), {}, 64 << 10);
      const got = await drain(reader);
      expect((await child.ended).exitCode).toBe(0);
      expect(sha(got.bytes)).toBe(sha(data));
      expect(got.memories.size).toBe(1); // the socket, elsewhere
      // libuv would have bound the first 107 bytes of the long path: a stray file in work/.
      expect(readdirSync(work).sort()).toEqual(['data', 'x'.repeat(120)]);
      expect(leftovers(long)).toEqual([]);
      expect(leftovers('/dev/shm').length).toBe(shm);
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    }
  });

  it('no socket possible (the temp dir is a file): the same bytes through an ordinary pipe', async () => {
    const notDir = join(work, 'not-a-dir');
    writeFileSync(notDir, '');
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = notDir;
    try {
      const { child, reader } = await pipeToReader(cmd(whichSystem('cat')!, [file]), {}, 64 << 10);
      const got = await drain(reader);
      expect((await child.ended).exitCode).toBe(0);
      expect(sha(got.bytes)).toBe(sha(data));
      expect(child.stdout).not.toBeNull(); // it really was the pipe
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
      rmSync(notDir);
    }
  });
});
