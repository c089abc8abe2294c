/**
 * What the engines' progress readers share: a tool's output arrives in chunks that cut lines
 * anywhere, and the text shown comes partly from tenants (file names), which must not reach the
 * admin's terminal as control characters (a newline would break the block, an escape would
 * drive the terminal, a bidi override would show a name other than it is).
 */

/** Feed chunks; `line` gets each whole line (without its `\n`); `end()` gives the unfinished rest, if any. */
export interface LineSplitter {
  push(chunk: string): void;
  end(): void;
}

export function lineSplitter(line: (text: string) => void): LineSplitter {
  let rest = '';
  return {
    push(chunk) {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop() ?? '';
      for (const l of lines) line(l);
    },
    end() {
      if (rest) line(rest);
      rest = '';
    },
  };
}

/** C0, DEL, C1, the line/paragraph separators and the bidi controls (they reorder what follows on screen): each shown as `?`. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** A name for one line of the display: no control character, at most `max` characters (the end kept: a path's file name). */
export function displayName(text: string, max = 60): string {
  const clean = text.replace(CONTROL, '?');
  const chars = [...clean];
  return chars.length <= max ? clean : '…' + chars.slice(chars.length - max + 1).join('');
}
