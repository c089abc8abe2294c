/**
 * Where the statements of a mariadb-dump file begin and end, as the mariadb client splits them
 * (client/mysql.cc add_line): quotes '…' "…" `…` with backslash escapes (none under
 * NO_BACKSLASH_ESCAPES) and doubled quotes, /* *\/ comments (not /*! and /*M!, which are code),
 * -- and # comments, and the DELIMITER command. The parallel loader splits a dump only at the
 * boundaries found here; tenant text (row values, routine and trigger bodies) never looks like a
 * boundary, whatever lines it holds.
 *
 * What the client might read otherwise is not guessed: a backslash outside a string (a client
 * command), a backslash inside `…` or inside "…" under ANSI_QUOTES (clients differ), a DELIMITER
 * line inside a statement, or an sql_mode set in a way not followed here make the lexer
 * `uncertain`, and the loader then sends the whole dump through one client, verbatim.
 *
 * Fed byte ranges of one stream in order; it reports each statement's [start, end) to its owner.
 */
export interface LexedStatement {
  /** Offset of the statement's first byte that is not whitespace (a comment counts as text). */
  readonly start: number;
  /** Offset just past its delimiter, and past one '\n' that follows it. */
  readonly end: number;
  /** The delimiter it ended with. */
  readonly delimiter: string;
  /** Its first bytes (up to PREFIX), to tell what it is. */
  readonly prefix: Buffer;
  /** A DELIMITER command (start..end is its line), not a statement the server sees. */
  readonly command?: boolean;
}

const PREFIX = 1024;

const enum S {
  Code,
  Single,
  Double,
  Back,
  Block,
  Line,
}

export class DumpLexer {
  delimiter = ';';
  /** Backslashes do not escape in strings (the session's sql_mode has NO_BACKSLASH_ESCAPES). */
  nbe = false;
  ansiQuotes = false;
  uncertain: string | undefined;
  private state = S.Code;
  /** Bytes of the statement so far other than whitespace: -1 while it has none. */
  private start = -1;
  private prefix: Buffer[] = [];
  private prefixLength = 0;
  /** At the start of a line, with nothing but whitespace and comments in the statement so far. */
  private emptyLine = true;
  private savedModes = new Map<string, { nbe: boolean; ansi: boolean } | undefined>();
  /** The statement text, kept only while it is short (SET statements are read for sql_mode). */
  private pendingEnd = -1;

  constructor(private readonly onStatement: (s: LexedStatement) => void) {}

  /**
   * Bytes the Code state passes over without a look (1): not whitespace, quote, comment, escape
   * or the delimiter's first byte; D/d (2) only inside a word, where "delimiter" cannot start;
   * x/X (3) with the hex digits after it.
   */
  private boringFor = '';
  private boringTable = new Uint8Array(256);
  private get boring(): Uint8Array {
    if (this.boringFor !== this.delimiter) {
      this.boringTable.fill(1);
      this.boringTable[68] = this.boringTable[100] = 2;
      // After an x the hex digits (a 0x… blob) are all boring, but for a delimiter that starts with one.
      if (!isHexDigit(this.delimiter.charCodeAt(0))) this.boringTable[88] = this.boringTable[120] = 3;
      for (const c of [9, 10, 11, 12, 13, 32, 34, 39, 96, 35, 45, 47, 92, this.delimiter.charCodeAt(0)]) this.boringTable[c] = 0;
      this.boringFor = this.delimiter;
    }
    return this.boringTable;
  }

  /** The byte before the next one fed (a word's D/d may be the first byte of a chunk). */
  private prev = 10;

  /** Whether the last statement ended and nothing of the next one has been seen. */
  get between(): boolean {
    return this.start === -1 && this.state === S.Code;
  }

  /**
   * Lex `buf` (stream offset `base`) from `from`; returns where it stopped: buf.length, or earlier
   * when it needs bytes after the end to decide (then call again with those bytes appended),
   * unless `last`.
   */
  lex(buf: Buffer, base: number, from: number, last: boolean): number {
    const stop = this.scan(buf, base, from, last);
    if (stop > from) this.prev = buf[stop - 1]!;
    return stop;
  }

  private scan(buf: Buffer, base: number, from: number, last: boolean): number {
    let i = from;
    const n = buf.length;
    while (i < n) {
      if (this.pendingEnd !== -1) {
        // One '\n' after a delimiter belongs to the statement (mariadb-dump ends lines so).
        const end = buf[i] === 10 ? i + 1 : i;
        this.finish(base + end, buf, base);
        i = end;
        continue;
      }
      const c = buf[i]!;
      switch (this.state) {
        case S.Single:
        case S.Double:
        case S.Back: {
          const q = this.state === S.Single ? 39 : this.state === S.Double ? 34 : 96;
          const at = this.scanQuoted(buf, i, q);
          if (at < 0) {
            // Needs the byte after a backslash or a quote at the end of the chunk.
            const stop = -at - 1;
            this.addPrefix(buf, i, stop);
            if (!last) return this.keep(buf, base, stop);
            i = n;
            break;
          }
          this.addPrefix(buf, i, at);
          i = at;
          this.state = S.Code;
          continue;
        }
        case S.Block: {
          const at = buf.indexOf('*/', i, 'latin1');
          if (at === -1) {
            if (!last && buf[n - 1] === 42) {
              this.addPrefix(buf, i, n - 1);
              return this.keep(buf, base, n - 1);
            }
            this.addPrefix(buf, i, n);
            i = n;
            break;
          }
          this.addPrefix(buf, i, at + 2);
          i = at + 2;
          this.state = S.Code;
          continue;
        }
        case S.Line: {
          const at = buf.indexOf(10, i);
          if (at === -1) {
            this.addPrefix(buf, i, n);
            i = n;
            break;
          }
          this.addPrefix(buf, i, at + 1);
          i = at + 1;
          this.state = S.Code;
          this.emptyLine = this.start === -1 || this.onlyComments;
          continue;
        }
        case S.Code:
          break;
      }
      if (this.state !== S.Code || i >= n) continue;
      if (!this.emptyLine && this.start !== -1) {
        // Code bytes that cannot start or end anything (digits, commas, names, hex) and the
        // strings between them: skipped at once (rows are mostly these).
        const j = this.skipValues(buf, i);
        if (j > i) {
          this.onlyComments = false;
          this.addPrefix(buf, i, j);
          i = j;
          continue;
        }
      }
      // A DELIMITER command: a line of its own, read whole, when the statement holds nothing yet.
      if (this.emptyLine && (c === 68 || c === 100 || c === 32 || c === 9)) {
        const word = this.delimiterLine(buf, i, last);
        if (word === 'more') return this.keep(buf, base, i);
        if (word) {
          const nl = buf.indexOf(10, i);
          const end = nl === -1 ? n : nl + 1;
          if (this.start !== -1 && !this.onlyComments) this.uncertain ??= `a DELIMITER line inside a statement at byte ${base + i}`;
          this.onStatement({ start: base + i, end: base + end, delimiter: this.delimiter, prefix: Buffer.from(buf.subarray(i, end)), command: true });
          this.delimiter = word.delimiter;
          this.reset();
          i = end;
          continue;
        }
      }
      if (c === 10) {
        this.emptyLine = this.start === -1 || this.onlyComments;
        if (this.start !== -1) this.addPrefix(buf, i, i + 1);
        i++;
        continue;
      }
      if (c === 32 || c === 9 || c === 13) {
        if (this.start !== -1) this.addPrefix(buf, i, i + 1);
        i++;
        continue;
      }
      this.emptyLine = false;
      // The delimiter first: the client checks for it before anything else at each byte.
      const d = this.delimiter;
      if (c === d.charCodeAt(0)) {
        if (i + d.length > n && !last) return this.keep(buf, base, i);
        if (buf.toString('latin1', i, i + d.length) === d) {
          this.touch(base + i);
          this.addPrefix(buf, i, i + d.length);
          i += d.length;
          if (i >= n && !last) {
            // The '\n' after it may be in the next chunk.
            this.pendingEnd = 0;
            return n;
          }
          const end = i < n && buf[i] === 10 ? i + 1 : i;
          this.finish(base + end, buf, base);
          i = end;
          continue;
        }
      }
      if (c === 92) {
        this.uncertain ??= `a backslash outside a string at byte ${base + i} (a client command)`;
      }
      if (c === 39 || c === 34 || c === 96) {
        this.touch(base + i);
        this.addPrefix(buf, i, i + 1);
        this.state = c === 39 ? S.Single : c === 34 ? S.Double : S.Back;
        i++;
        continue;
      }
      if (c === 47 /* / */ || c === 45 /* - */) {
        if (i + 4 > n && !last) return this.keep(buf, base, i);
        const next = buf[i + 1];
        if (c === 47 && next === 42) {
          const code = buf[i + 2] === 33 || (buf[i + 2] === 77 && buf[i + 3] === 33);
          this.touch(base + i, !code);
          this.addPrefix(buf, i, i + 2);
          i += 2;
          if (!code) this.state = S.Block;
          continue;
        }
        if (c === 45 && next === 45 && (i + 2 >= n || isSpace(buf[i + 2]!))) {
          this.touch(base + i, true);
          this.state = S.Line;
          continue;
        }
      }
      if (c === 35 /* # */) {
        this.touch(base + i, true);
        this.state = S.Line;
        continue;
      }
      if ((c === 68 || c === 100) && !isWord(i > 0 ? buf[i - 1]! : this.prev)) {
        // The client may take "delimiter " inside a statement as its command: not followed here.
        if (i + 10 > n && !last) return this.keep(buf, base, i);
        if (/^delimiter\s/i.test(buf.toString('latin1', i, i + 10))) this.uncertain ??= `a DELIMITER word inside a statement at byte ${base + i}`;
      }
      this.touch(base + i);
      this.addPrefix(buf, i, i + 1);
      i++;
    }
    return n;
  }

  /**
   * From `i` inside a statement, in code: past code bytes that cannot start or end anything and
   * past whole '…' strings ("…" too, but for ANSI_QUOTES); stops at anything else, or at a
   * string whose end is not in `buf` (the main loop takes it from its quote).
   */
  private skipValues(buf: Buffer, i: number): number {
    const boring = this.boring;
    const escapes = !this.nbe;
    const n = buf.length;
    for (;;) {
      i = skipBoring(buf, i, boring, this.prev);
      if (i >= n) return i;
      const c = buf[i]!;
      if (c !== 39 && (c !== 34 || this.ansiQuotes)) return i;
      const end = quotedEnd(buf, i + 1, c, escapes);
      if (end < 0) return i;
      i = end;
    }
  }

  /** The end of the stream: a statement left without its delimiter is one too (the client runs it). */
  end(base: number): void {
    if (this.pendingEnd !== -1) this.finish(base, Buffer.alloc(0), base);
    else if (this.start !== -1 && !this.onlyComments) {
      this.onStatement({ start: this.start, end: base, delimiter: '', prefix: Buffer.concat(this.prefix) });
      this.reset();
    }
  }

  private onlyComments = true;

  /** The statement's first byte (a comment marks it started, but leaves it "only comments"). */
  private touch(at: number, comment = false): void {
    if (this.start === -1) {
      this.start = at;
      this.onlyComments = comment;
    } else if (!comment) this.onlyComments = false;
  }

  private addPrefix(buf: Buffer, from: number, to: number): void {
    if (this.start === -1 || this.prefixLength >= PREFIX || to <= from) return;
    const piece = Buffer.from(buf.subarray(from, Math.min(to, from + PREFIX - this.prefixLength)));
    this.prefix.push(piece);
    this.prefixLength += piece.length;
  }

  private finish(end: number, _buf: Buffer, _base: number): void {
    this.pendingEnd = -1;
    const prefix = Buffer.concat(this.prefix);
    const delimiter = this.delimiter;
    const start = this.start === -1 ? end : this.start;
    this.reset();
    this.readSqlMode(prefix);
    this.onStatement({ start, end, delimiter, prefix });
  }

  private reset(): void {
    this.start = -1;
    this.prefix = [];
    this.prefixLength = 0;
    this.emptyLine = true;
    this.onlyComments = true;
    this.state = S.Code;
  }

  /** Stops at `at`: the caller feeds buf[at..] again with more bytes after it. */
  private keep(_buf: Buffer, _base: number, at: number): number {
    return at;
  }

  /**
   * The end of a quoted string starting at `i` (inside it): the offset after its closing quote,
   * or -(stop+1) when the byte after a backslash or a quote at the chunk's end decides.
   */
  private scanQuoted(buf: Buffer, i: number, q: number): number {
    const escapes = !this.nbe;
    if (escapes && (q === 96 || (q === 34 && this.ansiQuotes))) {
      const end = quotedEnd(buf, i, q, escapes);
      const stop = end < 0 ? -end - 1 : end;
      // The client's reading of a backslash in an identifier differs between versions.
      if (buf.subarray(i, stop).includes(92)) this.uncertain ??= 'a backslash inside a quoted identifier';
      return end;
    }
    return quotedEnd(buf, i, q, escapes);
  }

  /** `DELIMITER x` at a line start: the new delimiter, 'more' when the line is not all here. */
  private delimiterLine(buf: Buffer, i: number, last: boolean): { delimiter: string } | 'more' | undefined {
    let j = i;
    while (j < buf.length && (buf[j] === 32 || buf[j] === 9)) j++;
    if (j + 10 > buf.length && !last) return buf.indexOf(10, i) === -1 ? 'more' : this.matchDelimiter(buf, j);
    return this.matchDelimiter(buf, j, last);
  }

  private matchDelimiter(buf: Buffer, j: number, last = true): { delimiter: string } | 'more' | undefined {
    const word = buf.toString('latin1', j, Math.min(buf.length, j + 10));
    if (!/^delimiter[ \t]/i.test(word)) return undefined;
    const nl = buf.indexOf(10, j);
    if (nl === -1 && !last) return 'more';
    const line = buf.toString('latin1', j + 10, nl === -1 ? buf.length : nl).trim();
    const m = /^(\S+)/.exec(line);
    if (!m || /['"`\\]/.test(m[1]!)) {
      this.uncertain ??= `a DELIMITER line the lexer does not read: ${JSON.stringify(line.slice(0, 40))}`;
      return { delimiter: this.delimiter };
    }
    return { delimiter: m[1]! };
  }

  /**
   * `SET … sql_mode = '…'` / `= @var` / `@var = @@sql_mode` (what mariadb-dump writes around
   * routines and triggers, and in its header and trailer): whether strings still take backslash
   * escapes, and whether "…" is an identifier. Any other statement naming sql_mode: uncertain.
   */
  private readSqlMode(prefix: Buffer): void {
    if (!/sql_mode/i.test(prefix.toString('latin1'))) return;
    const text = codeOf(prefix).toString('latin1');
    // Only a SET changes the session's mode (a routine body that sets it does so when it runs).
    if (!/^(?:\/\*M?!\d*\s*)?SET\b/i.test(text)) return;
    const body = /^\s*(?:\/\*M?!\d*\s*)?SET\s+([^]*?)\s*(?:\*\/\s*)?(?:;|$)/i.exec(text.replace(/\s*\*\/\s*;*\s*$/, ''));
    if (!body || prefix.length >= PREFIX) {
      this.uncertain ??= `a statement that sets sql_mode in a way the lexer does not follow`;
      return;
    }
    for (const part of body[1]!.match(/(?:'[^']*'|[^,'])+/g) ?? []) {
      const p = part.trim();
      let m = /^@(\w+)\s*=\s*@@(?:session\.)?sql_mode$/i.exec(p);
      if (m) {
        this.savedModes.set(m[1]!.toLowerCase(), { nbe: this.nbe, ansi: this.ansiQuotes });
        continue;
      }
      m = /^(?:@@(?:session\.)?)?sql_mode\s*=\s*'([^'\\]*)'$/i.exec(p);
      if (m) {
        this.nbe = /\bNO_BACKSLASH_ESCAPES\b/i.test(m[1]!);
        this.ansiQuotes = /\b(ANSI_QUOTES|ANSI)\b/i.test(m[1]!);
        continue;
      }
      m = /^(?:@@(?:session\.)?)?sql_mode\s*=\s*@(\w+)$/i.exec(p);
      if (m && this.savedModes.get(m[1]!.toLowerCase())) {
        const saved = this.savedModes.get(m[1]!.toLowerCase())!;
        this.nbe = saved.nbe;
        this.ansiQuotes = saved.ansi;
        continue;
      }
      if (/sql_mode/i.test(p)) {
        this.uncertain ??= `a statement that sets sql_mode in a way the lexer does not follow: ${p.slice(0, 60)}`;
        return;
      }
    }
  }
}

export /** A statement's bytes from its first byte that is not in a comment or whitespace. */
function codeOf(prefix: Buffer): Buffer {
  let i = 0;
  for (;;) {
    while (i < prefix.length && (prefix[i] === 32 || prefix[i] === 9 || prefix[i] === 10 || prefix[i] === 13)) i++;
    if (prefix[i] === 35 || (prefix[i] === 45 && prefix[i + 1] === 45)) {
      const nl = prefix.indexOf(10, i);
      if (nl === -1) return prefix.subarray(prefix.length);
      i = nl + 1;
      continue;
    }
    if (prefix[i] === 47 && prefix[i + 1] === 42 && prefix[i + 2] !== 33 && !(prefix[i + 2] === 77 && prefix[i + 3] === 33)) {
      const end = prefix.indexOf('*/', i + 2, 'latin1');
      if (end === -1) return prefix.subarray(prefix.length);
      i = end + 2;
      continue;
    }
    return prefix.subarray(i);
  }
}

/**
 * The end of a quoted string from `from` (inside it, after a whole character): the offset after
 * its closing quote, or -(stop+1) when what follows the buffer decides (a backslash or a quote at
 * its end: stop is where to lex again; or the string goes on past it: stop = its length).
 * A quote is escaped when an odd run of backslashes stands right before it: each backslash takes
 * the next byte, so the run's parity alone tells. Found with indexOf, which is native: a byte loop
 * in JS costs several nanoseconds a byte, gigabytes of rows at dump time.
 */
function quotedEnd(buf: Buffer, from: number, q: number, escapes: boolean): number {
  const n = buf.length;
  let i = from;
  // Most values are short (dates, keys, names): their first bytes read here cost less than a
  // call to indexOf; a longer string goes on with indexOf from a whole character.
  for (const near = Math.min(n, from + SHORT); i < near; i++) {
    const c = buf[i]!;
    if (c === q) {
      if (i + 1 >= n) return -(i + 1);
      if (buf[i + 1] !== q) return i + 1;
      i++;
    } else if (c === 92 && escapes) {
      if (i + 1 >= n) return -(i + 1);
      i++;
    }
  }
  for (;;) {
    const at = buf.indexOf(q, i);
    if (at === -1) {
      if (escapes && oddRun(buf, n, i)) return -(n - 1 + 1); // the last backslash takes a byte of the next chunk
      return -(n + 1);
    }
    if (escapes && oddRun(buf, at, i)) {
      i = at + 1;
      continue;
    }
    if (at + 1 >= n) return -(at + 1);
    if (buf[at + 1] === q) {
      i = at + 2;
      continue;
    }
    return at + 1;
  }
}

const SHORT = 48;

/** An odd number of backslashes right before `at`, none before `floor` counted. */
function oddRun(buf: Buffer, at: number, floor: number): boolean {
  let k = at - 1;
  while (k >= floor && buf[k] === 92) k--;
  return (at - 1 - k) % 2 === 1;
}

/** The first byte from `i` that `boring` does not pass over, or `n`; `prev`: the byte before buf[0]. */
function skipBoring(buf: Buffer, i: number, boring: Uint8Array, prev: number): number {
  const n = buf.length;
  for (; i < n; i++) {
    const b = boring[buf[i]!];
    if (b === 1) continue;
    // A D inside a word (hex digits of a blob) cannot start the word "delimiter".
    if (b === 2 && isWord(i > 0 ? buf[i - 1]! : prev)) continue;
    if (b === 3) {
      i = hexEnd(buf, i + 1) - 1;
      continue;
    }
    break;
  }
  return i;
}

/**
 * The first byte from `i` that is not a hex digit, or `n`: --hex-blob writes blobs as 0x…, a
 * fifth of the bench's dump; this loop has one test a byte where skipBoring's has three.
 */
function hexEnd(buf: Buffer, i: number): number {
  const n = buf.length;
  while (i < n && HEX[buf[i]!] === 1) i++;
  return i;
}

const HEX = new Uint8Array(256);
for (const c of '0123456789ABCDEFabcdef') HEX[c.charCodeAt(0)] = 1;

function isHexDigit(c: number): boolean {
  return HEX[c] === 1;
}

function isWord(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c === 36 || c >= 128;
}

function isSpace(c: number): boolean {
  return c === 32 || c === 9 || c === 10 || c === 13 || c === 11 || c === 12;
}

/**
 * The statements of a run of whole INSERT statements of one table (a rows block of the map): the
 * same lexer, from the top level with the session's escapes as they were at the block.
 */
export function splitStatements(run: Buffer, nbe: boolean): Buffer[] {
  const out: Buffer[] = [];
  const lexer = new DumpLexer((s) => out.push(run.subarray(s.start, s.end)));
  lexer.nbe = nbe;
  lexer.lex(run, 0, 0, true);
  lexer.end(run.length);
  return out;
}
