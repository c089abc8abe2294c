/**
 * A bound on `restic backup` over a cut link. restic 0.14 has no timeout of its own: a request on
 * a dead connection waits for the kernel to give the connection up (~15 min of TCP retransmits),
 * then restic retries with back-off for up to 15 min more. Its --json status lines say how far it
 * read (files_done, bytes_done); while uploads are stuck the archiver stops reading, so these stop
 * moving. No movement (nor any other line) for `stallMs`: the watchdog aborts restic.
 */
export interface StallWatch {
  /** Give it restic's stdout as it comes. */
  readonly onStdout: (chunk: string) => void;
  /** Aborted when restic made no progress for stallMs. */
  readonly signal: AbortSignal;
  readonly stalled: () => boolean;
  end(): void;
}

export function resticStallWatch(stallMs: number, now: () => number = Date.now): StallWatch {
  const abort = new AbortController();
  let last = now();
  let seen = '';
  let partial = '';
  const onStdout = (chunk: string): void => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.trim()) continue;
      // A status line repeats itself while nothing moves (seconds_elapsed aside): only its counters count.
      const counters = /"message_type":"status"/.test(line) ? `${/"files_done":(\d+)/.exec(line)?.[1] ?? ''}/${/"bytes_done":(\d+)/.exec(line)?.[1] ?? ''}` : line;
      if (counters !== seen) {
        seen = counters;
        last = now();
      }
    }
  };
  // Checked a few times per period: the abort comes at most a quarter of stallMs late.
  const timer = setInterval(() => {
    if (now() - last >= stallMs) abort.abort();
  }, Math.max(50, Math.min(5000, stallMs / 4)));
  timer.unref();
  return {
    onStdout,
    signal: abort.signal,
    stalled: () => abort.signal.aborted,
    end: () => clearInterval(timer),
  };
}
