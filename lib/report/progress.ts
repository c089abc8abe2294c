/**
 * One self-rewriting line on a terminal ("dumping 12/40 mysql shop_db"). Only used when stderr
 * is a TTY: cron and Bacula see nothing of it.
 */
export class ProgressLine {
  private last = 0;
  private shown = false;
  constructor(private readonly stream: NodeJS.WriteStream) {}

  update(done: number, total: number, current: string): void {
    const now = Date.now();
    if (now - this.last < 100 && done < total) return;
    this.last = now;
    const width = Math.max(20, (this.stream.columns ?? 80) - 1);
    const text = `dumping ${done}/${total}${current ? ` ${current}` : ''}`;
    this.stream.write(`\r${text.slice(0, width).padEnd(width)}`);
    this.shown = true;
  }

  done(): void {
    if (this.shown) this.stream.write('\r\x1b[K');
    this.shown = false;
  }
}
