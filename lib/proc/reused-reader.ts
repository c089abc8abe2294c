import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Writable } from 'node:stream';

/**
 * A child's stdout read into one buffer that every read fills again, for the restore's passes
 * over a decompressed dump (gigabytes each). A child's stdout pipe allocates a new 64 KiB Buffer
 * per read: several times the dump's size for a restore (the map and one pass per connection),
 * and V8 answers that much new off-heap memory with frequent full marks of its heap, seconds of
 * CPU beside the load. One reused buffer costs a small fraction of that.
 *
 * Node only reads into a caller's buffer on a socket it connects itself (net's `onread`), so the
 * child writes into a Unix socket: the listening end lives for the one connection, in a 0700
 * directory (an abstract socket would let any local user connect first and read the dump).
 *
 * Each chunk handed out is a view of the one buffer, valid until the next one is asked for:
 * whoever keeps bytes longer copies them (kinds/mysql/load/parallel.ts's client sinks do).
 */
export interface ChunkReader extends AsyncIterable<Buffer> {
  /** The next chunk (the one before is no longer valid), or undefined at the end of the output. */
  next(): Promise<Buffer | undefined>;
  /** No more reads: the child writing sees EPIPE (its exit status is the caller's business). */
  close(): void;
}

class SocketReader implements ChunkReader {
  private pending: Buffer | undefined;
  private handedOut = false;
  private ended = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;

  constructor(private readonly socket: Socket) {
    const done = (err?: Error): void => {
      this.ended = true;
      if (err) this.failure ??= err;
      this.wake?.();
    };
    socket.on('end', () => done());
    socket.on('close', () => done());
    socket.on('error', (err) => done(err));
  }

  /** Called by the socket for every read: the chunk waits for the consumer, the socket pauses. */
  received(bytes: number, buffer: Buffer): boolean {
    this.pending = buffer.subarray(0, bytes);
    this.wake?.();
    return false;
  }

  async next(): Promise<Buffer | undefined> {
    if (this.handedOut) {
      this.handedOut = false;
      if (!this.ended) this.socket.resume();
    }
    while (!this.pending && !this.ended) await new Promise<void>((r) => (this.wake = r));
    this.wake = undefined;
    const chunk = this.pending;
    this.pending = undefined;
    if (chunk) {
      this.handedOut = true;
      return chunk;
    }
    if (this.failure) throw this.failure;
    return undefined;
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return chunksOf(this);
  }

  close(): void {
    this.socket.destroy();
    this.ended = true;
    this.wake?.();
  }
}

/**
 * A connected pair: `theirs` to hand to a child as its stdout (then destroyed: the child has its
 * own copy), `reader` reading what it writes. Undefined when no socket can be set up (no temp dir
 * with a short enough path, no permission): the caller uses a pipe.
 */
export async function openSocketReader(bufferBytes = 256 << 10): Promise<{ theirs: Socket; reader: ChunkReader } | undefined> {
  const parent = socketParent();
  if (!parent) return undefined;
  let dir: string | undefined;
  let server: Server | undefined;
  try {
    dir = await mkdtemp(join(parent, 'asb-read-'));
    const path = join(dir, 's');
    const listening = createServer();
    server = listening;
    await listen(listening, path);
    const buffer = Buffer.allocUnsafe(bufferBytes);
    let reader: SocketReader | undefined;
    const ours = connect({ path, onread: { buffer, callback: (n) => reader!.received(n, buffer) } });
    reader = new SocketReader(ours);
    // A connect that fails never reaches the server: its error ends the wait too.
    const accepted = new Promise<Socket>((resolve, reject) => {
      listening.once('connection', resolve);
      listening.once('error', reject);
      ours.once('error', reject);
    }).catch((err: unknown) => {
      ours.destroy();
      throw err;
    });
    return { theirs: await accepted, reader };
  } catch {
    return undefined;
  } finally {
    server?.close();
    if (dir) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** A stream's chunks (a new Buffer each, e.g. a pipe's) behind the ChunkReader interface. */
export function streamReader(stream: NodeJS.ReadableStream): ChunkReader {
  return new StreamReader(stream as AsyncIterable<Buffer>);
}

/**
 * Every chunk of `source` to `onData`, then into `sink`, the next read only once the write is
 * done (the chunk's memory is read into again), then the end of `sink`. On a failure (onData
 * throws, the sink breaks) both ends are closed, so neither side waits for the other. `pace`,
 * awaited after each chunk, slows the source down (lib/proc/rate-limit.ts).
 */
export async function relay(source: ChunkReader, onData: (chunk: Buffer) => void, sink: Writable, pace?: (bytes: number) => Promise<void>): Promise<void> {
  try {
    for (let chunk = await source.next(); chunk; chunk = await source.next()) {
      onData(chunk);
      await settled(sink, (done) => sink.write(chunk, done));
      if (pace) await pace(chunk.length);
    }
    await settled(sink, (done) => sink.end(done));
  } catch (err) {
    sink.destroy();
    source.close();
    throw err;
  }
}

/**
 * A socket's path holds at most 107 bytes, and Node 20's libuv cuts a longer one short without a
 * word, binding outside the private directory (checked: a 140-byte path bound its first 107
 * bytes): so a temp dir whose socket path would be too long is not used.
 */
/**
 * A write or end of `sink`, settled by its callback or by the sink closing first. A child's stdin
 * destroyed while a write was in flight (the child was killed: Node destroys its stdin on exit)
 * never calls that write's callback: a relay waiting for it hung the whole process after a
 * SIGTERM, holding the lock, with every child already gone.
 */
function settled(sink: Writable, act: (done: (err?: Error | null) => void) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (sink.destroyed) {
      reject(new Error('the reader closed its input'));
      return;
    }
    const closed = (): void => reject(new Error('the reader closed its input'));
    sink.once('close', closed);
    act((err) => {
      sink.off('close', closed);
      if (err) reject(err);
      else resolve();
    });
  });
}

function socketParent(): string | undefined {
  const fits = (dir: string): boolean => Buffer.byteLength(join(dir, 'asb-read-XXXXXX', 's')) <= 107;
  return [tmpdir(), '/dev/shm', '/tmp'].find((d) => fits(d) && existsSync(d));
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

async function* chunksOf(reader: ChunkReader): AsyncGenerator<Buffer> {
  for (let c = await reader.next(); c; c = await reader.next()) yield c;
}

/** The fallback: a pipe's chunks (a new Buffer each) behind the same interface. */
class StreamReader implements ChunkReader {
  private readonly it: AsyncIterator<Buffer>;
  private ahead: Promise<IteratorResult<Buffer>>;

  constructor(stream: AsyncIterable<Buffer>) {
    this.it = stream[Symbol.asyncIterator]();
    // Reading starts now: a child's stdout nobody reads when it exits is drained and lost (Node's
    // flushStdio), and a reader may wait for its first range until other tables have loaded.
    // The pipe still pushes back: the iterator holds one chunk.
    this.ahead = this.readAhead();
  }

  async next(): Promise<Buffer | undefined> {
    const r = await this.ahead;
    if (r.done) return undefined;
    this.ahead = this.readAhead();
    return r.value;
  }

  /** A stream error is seen by the next next(); never an unhandled rejection if none comes. */
  private readAhead(): Promise<IteratorResult<Buffer>> {
    const p = this.it.next();
    p.catch(() => undefined);
    return p;
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return chunksOf(this);
  }

  close(): void {
    void this.it.return?.().catch(() => undefined);
  }
}
