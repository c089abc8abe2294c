/**
 * The engines' progress readers on what the tools write (no tool runs here): borg's --log-json
 * stderr (log messages back to the text plain borg prints; progress lines to the display), with
 * a hostile corpus; duplicity's --progress lines; a Bacula file daemon's running-job status.
 */
import { describe, expect, it } from 'vitest';
import { borgJsonStderr, readBorgJsonLine } from '../../lib/engine/borg-log.js';
import { restoreStatusText } from '../../lib/engine/bacula-restore.js';
import { duplicityProgressLines, duplicityProgressText } from '../../lib/engine/duplicity-progress.js';
import { displayName } from '../../lib/engine/progress-lines.js';

/** What Python's json.dumps (ensure_ascii, borg's default) makes of a string. */
function pyJson(value: unknown): string {
  return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

const log = (levelname: string, message: string): string => pyJson({ type: 'log_message', time: 1765146000.5, message, levelname, name: 'borg.archiver' });
const progress = (path: string, finished = false): string =>
  finished
    ? pyJson({ time: 1765146001.2, type: 'archive_progress', finished: true })
    : pyJson({ original_size: 3 * 1048576, compressed_size: 2 * 1048576, deduplicated_size: 1048576, nfiles: 42, path, time: 1765146001.1, type: 'archive_progress', finished: false });

// Tenants' file names: a newline, quotes, a backslash, an escape sequence that would drive the
// terminal, a name borg could not decode (its remove_surrogates gives '?'), right-to-left text.
const HOSTILE = [
  'home/virtual/site1/shadow/var/www/html/a\nb.php',
  'home/virtual/site1/shadow/var/www/html/"quoted" \'single\'.txt',
  'home/virtual/site1/shadow/var/www/html/back\\slash',
  'home/virtual/site1/shadow/var/www/html/\u001b]0;owned\u0007\u001b[2J.txt',
  'home/virtual/site1/shadow/var/www/html/latin1-caf?.txt',
  'home/virtual/site1/shadow/var/www/html/\u202eexe.txt\u2028x',
];

const WARNINGS = [
  log('WARNING', "/home/virtual/site1/shadow/var/www/html/a\nb.php: file changed while we backed it up"),
  log('WARNING', '/home/virtual/site2: [Errno 2] No such file or directory: \'/home/virtual/site2\''),
  log('ERROR', 'Local Exception\nTraceback (most recent call last):\n  File "x.py", line 1\nPID: 12  CWD: /\nsys.argv: [\'borg\']'),
];

/** A borg run as it writes stderr: progress around its warnings, ssh's own words, a line cut short at the end. */
const CORPUS = [
  pyJson({ type: 'progress_message', operation: 1, msgid: 'cache.begin_transaction', finished: false, message: 'Initializing cache transaction: Reading files', time: 1 }),
  pyJson({ type: 'progress_message', operation: 1, msgid: 'cache.begin_transaction', finished: true, time: 2 }),
  ...HOSTILE.map((p) => progress(p)),
  WARNINGS[0]!,
  'Warning: Permanently added \'backup.example\' (ED25519) to the list of known hosts.',
  progress(HOSTILE[0]!),
  WARNINGS[1]!,
  'not json {"type": "log_message"',
  '{"type": "log_message", "message": "broken',
  '[1, 2, 3]',
  '{"no": "type"}',
  pyJson({ type: 'something_new', value: 1 }),
  progress('', true),
  WARNINGS[2]!,
].join('\n') + '\n' + '{"type": "log_message", "time": 1765146002.0, "message": "cut sh';

/** What plain borg (no --log-json) would have printed for the same run, line for line. */
const PLAIN = [
  "/home/virtual/site1/shadow/var/www/html/a\nb.php: file changed while we backed it up",
  'Warning: Permanently added \'backup.example\' (ED25519) to the list of known hosts.',
  '/home/virtual/site2: [Errno 2] No such file or directory: \'/home/virtual/site2\'',
  'not json {"type": "log_message"',
  '{"type": "log_message", "message": "broken',
  '[1, 2, 3]',
  '{"no": "type"}',
  pyJson({ type: 'something_new', value: 1 }),
  'Local Exception\nTraceback (most recent call last):\n  File "x.py", line 1\nPID: 12  CWD: /\nsys.argv: [\'borg\']',
  '{"type": "log_message", "time": 1765146002.0, "message": "cut sh',
].join('\n') + '\n';

function feed(chunks: readonly string[]): { text: string; progress: string[] } {
  const progress: string[] = [];
  const r = borgJsonStderr((t) => progress.push(t));
  for (const c of chunks) r.onStderr(c);
  return { text: r.text(), progress };
}

describe('borg --log-json stderr', () => {
  it('gives back the text plain borg prints: every message, ssh\'s lines and anything not borg\'s as it came; progress never in it', () => {
    const { text, progress } = feed([CORPUS]);
    expect(text).toBe(PLAIN);
    expect(text).not.toMatch(/archive_progress|Initializing cache|MiB/);
    // Every archive_progress line not finished, and the cache message, reached the display.
    expect(progress).toHaveLength(1 + HOSTILE.length + 1);
    expect(progress[0]).toBe('Initializing cache transaction: Reading files');
  });

  it('the same whatever the chunks: cut at every offset, and one character at a time', () => {
    const whole = feed([CORPUS]);
    for (let cut = 1; cut < CORPUS.length; cut += 7) expect(feed([CORPUS.slice(0, cut), CORPUS.slice(cut)])).toEqual(whole);
    expect(feed([...CORPUS])).toEqual(whole);
  });

  it('progress lines: sizes, files and the path, one line, no control character, bounded', () => {
    const { progress } = feed([CORPUS]);
    const lines = progress.slice(1, 1 + HOSTILE.length);
    for (const l of lines) {
      expect(l).toMatch(/^3\.00 MiB read, 1\.00 MiB new, 42 files {2}\S/);
      expect(l).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/);
      expect([...l].length).toBeLessThanOrEqual(100);
    }
    // The name's own characters, its newline and escapes shown as '?', its end kept.
    expect(lines[0]).toMatch(/a\?b\.php$/);
    expect(lines[1]).toMatch(/"quoted" 'single'\.txt$/);
    expect(lines[2]).toMatch(/back\\slash$/);
    expect(lines[3]).toMatch(/\?\]0;owned\?\?\[2J\.txt$/);
    expect(lines[4]).toMatch(/latin1-caf\?\.txt$/);
    expect(lines[5]).toMatch(/\?exe\.txt\?x$/);
    // Longer than the room for it: its start gives way.
    expect(lines[3]).toMatch(/  …/);
  });

  it('a line on its own: a finished progress and an empty message', () => {
    expect(readBorgJsonLine(progress('', true))).toEqual({});
    expect(readBorgJsonLine(log('WARNING', ''))).toEqual({ text: '' });
    expect(readBorgJsonLine(pyJson({ type: 'file_status', status: 'A', path: 'home/x\ny' }))).toEqual({ text: 'A home/x\ny' });
    const path = 'home/virtual/site1/shadow/var/www/html/\u001b[31mred\nline.txt';
    expect(readBorgJsonLine(pyJson({ type: 'progress_percent', operation: 2, msgid: 'extract', finished: false, message: ` 12.5% Extracting: ${path}`, current: 5, total: 40, info: [path], time: 1 }))).toEqual({
      progress: '12.5% Extracting:  …1/shadow/var/www/html/?[31mred?line.txt',
    });
    expect(readBorgJsonLine(pyJson({ type: 'progress_percent', operation: 3, msgid: 'check', finished: false, message: 'Checking segments  3.0%', current: 3, total: 100, info: null, time: 1 }))).toEqual({
      progress: 'Checking segments  3.0%',
    });
    expect(readBorgJsonLine('')).toEqual({ text: '' });
  });

  it('with no display: the text alone', () => {
    const r = borgJsonStderr();
    r.onStderr(CORPUS);
    expect(r.text()).toBe(PLAIN);
  });
});

describe('displayName', () => {
  it('keeps a short name, cuts a long one from the front, by characters (not UTF-16 halves)', () => {
    expect(displayName('a/b.txt')).toBe('a/b.txt');
    const long = '😀'.repeat(80);
    const shown = displayName(long, 10);
    expect([...shown]).toHaveLength(10);
    expect(shown).toBe('…' + '😀'.repeat(9));
  });
});

describe('duplicity --progress', () => {
  // As log.TransferProgress prints them (the second and later ones overwrite the one before).
  const lines = [
    '0.0KB 00:00:01 [0.0B/s] [>                                        ] 0% ETA Stalled!',
    '\x1b[F\x1b[2K12.3MB 00:00:05 [2.1MB/s] [=====>                                   ] 12% ETA 35sec',
    '\x1b[F\x1b[2K1.2GB 1d,02:03:04 [110.5KB/s] [========================================>] 99% ETA 1h 5min',
    '\x1b[F\x1b[2K512.0KB 00:00:02 [0.0B/s] [>                                        ] 1% ETA < 1min',
    '\x1b[F\x1b[2K0.0KB 00:00:04 [0.0KB/s] [>                                        ] 0% ETA 4sec',
  ];

  it('each progress line as one short line; anything else none', () => {
    expect(lines.map(duplicityProgressText)).toEqual([
      '0% done, 0.0 KB written in 00:00:01, 0.0 B/s, stalled',
      '12% done, 12.3 MB written in 00:00:05, 2.1 MB/s, about 35sec left',
      '99% done, 1.2 GB written in 1d,02:03:04, 110.5 KB/s, about 1h 5min left',
      '1% done, 512.0 KB written in 00:00:02, 0.0 B/s, about < 1min left',
      // No estimate yet: its "ETA" is the time so far.
      '0% done, 0.0 KB written in 00:00:04, 0.0 KB/s',
    ]);
    for (const other of ['--------------[ Backup Statistics ]--------------', 'Errors 0', 'Last full backup date: none', '12.3MB 00:00:05', '']) {
      expect(duplicityProgressText(other)).toBeUndefined();
    }
  });

  it('from stdout in chunks: only the progress, in order', () => {
    const seen: string[] = [];
    const push = duplicityProgressLines((t) => seen.push(t));
    const out = ['Local and Remote metadata are synchronized, no sync needed.', ...lines, 'Errors 0', ''].join('\n');
    for (let i = 0; i < out.length; i += 5) push(out.slice(i, i + 5));
    expect(seen).toHaveLength(lines.length);
    expect(seen[1]).toMatch(/^12% done/);
  });
});

describe('Bacula restore job status', () => {
  // `status client` of a 9.6 file daemon while two jobs run.
  const status = [
    'web1-fd Version: 9.6.7 (10 December 2020)  x86_64-pc-linux-gnu debian bookworm/sid',
    'Daemon started 07-Dec-26 22:30. Jobs: run=3 running=2.',
    '',
    'Running Jobs:',
    'JobId 7 Job ApisCP.2026-12-07_22.40.00_03 is running.',
    '    Full Backup Job started: 07-Dec-26 22:40',
    '    Files=99 Bytes=5,000 AveBytes/sec=1 LastBytes/sec=2 Errors=0',
    'JobId 12 Job RestoreFiles.2026-12-07_22.41.02_05 is running.',
    '    Restore Job started: 07-Dec-26 22:41',
    '    Files=1,234 Bytes=52,428,800 AveBytes/sec=10,485,760 LastBytes/sec=20,971,520 Errors=0',
    '    Bwlimit=0 ReadBytes=0',
    '    Processing file: /var/lib/apiscp-backup/restore/x',
    '====',
  ].join('\n');

  it("this job's files, bytes and rate, not the other job's", () => {
    expect(restoreStatusText(status, '12')).toBe('restore job 12: 1234 files, 50.00 MiB, 20.00 MiB/s');
    expect(restoreStatusText(status, '7')).toBe('restore job 7: 99 files, 0.00 MiB, 0.00 MiB/s');
  });

  it('a job not listed (not started yet, or over), or a JobId that only begins the same: nothing', () => {
    expect(restoreStatusText(status, '1')).toBeUndefined();
    expect(restoreStatusText(status.replace('Files=1,234 ', ''), '12')).toBeUndefined();
    expect(restoreStatusText('No Jobs running.\n====', '12')).toBeUndefined();
  });
});
