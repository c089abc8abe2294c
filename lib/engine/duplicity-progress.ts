import { lineSplitter } from './progress-lines.js';

/**
 * duplicity 0.8.22 with --progress: before the backup it reads the source once more (a dry run)
 * to know how much will change, then every --progress-rate seconds prints on stdout, as a NOTICE
 * ending in `\n` (each after the first prefixed with ESC[F ESC[2K to overwrite the one before on
 * a terminal):
 *   `12.3MB 00:00:05 [2.1MB/s] [=====>      ] 12% ETA 35sec`
 * (log.TransferProgress: bytes written so far, elapsed, speed, a bar, percent done, the time left
 * (`35sec`, `< 1min`, `1h 5min`) or `Stalled!`). Restores print none.
 */
const LINE = /^(?:\x1b\[F\x1b\[2K)*(\d+(?:\.\d+)?)(KB|MB|GB) (\S+) \[(\d+(?:\.\d+)?)(B|KB|MB|GB)\/s\] \[[= >]*\] (\d+)% ETA (.+?)\s*$/;

/** One short line ("12% done, 12.3 MB written in 00:00:05, 2.1 MB/s, about 35sec left"); undefined for any other line. */
export function duplicityProgressText(line: string): string | undefined {
  const m = LINE.exec(line);
  if (!m) return undefined;
  const [, amount, unit, elapsed, speed, speedUnit, percent, eta] = m;
  // At 0% its ETA is only the time so far (no estimate yet): left out. 0.8.22 counts bytes as each
  // volume is stored, so a backup within one volume (a first full onto file://) shows 0% until 100%.
  const left = eta === 'Stalled!' ? ', stalled' : percent === '0' ? '' : `, about ${eta} left`;
  return `${percent}% done, ${amount} ${unit} written in ${elapsed}, ${speed} ${speedUnit}/s${left}`;
}

/** duplicity's stdout, as it comes, to `onProgress` (its progress lines only). */
export function duplicityProgressLines(onProgress: (text: string) => void): (chunk: string) => void {
  const lines = lineSplitter((line) => {
    const text = duplicityProgressText(line);
    if (text) onProgress(text);
  });
  return (chunk) => lines.push(chunk);
}
