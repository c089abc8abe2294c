/**
 * Reading the SQL scripts pg_restore and pg_dumpall write, as text in which names and string
 * literals may hold anything a tenant chose (quotes, semicolons, newlines, "DATABASE x"). The
 * lexer knows where a literal or a quoted name starts and ends, so what we look at or rewrite
 * is always a token of the statement, never a piece of someone's comment.
 */

/** One top-level piece of a script: a statement (with its `;`) or a psql meta-command line. */
export interface ScriptPart {
  readonly kind: 'statement' | 'meta';
  readonly text: string;
}

/** Where the literal or comment that starts at `i` ends (the index after it), or -1 when none starts there. */
export function skipLiteral(s: string, i: number): number {
  const c = s[i]!;
  if (c === "'" || ((c === 'E' || c === 'e') && s[i + 1] === "'" && !isWordChar(s[i - 1]))) {
    // E'…' honours backslash escapes; a plain literal under standard_conforming_strings does not.
    const escapes = c !== "'";
    let j = escapes ? i + 2 : i + 1;
    for (; j < s.length; j++) {
      if (escapes && s[j] === '\\') j++;
      else if (s[j] === "'") {
        if (s[j + 1] === "'") j++;
        else return j + 1;
      }
    }
    return s.length;
  }
  if (c === '"') {
    let j = i + 1;
    for (; j < s.length; j++) {
      if (s[j] === '"') {
        if (s[j + 1] === '"') j++;
        else return j + 1;
      }
    }
    return s.length;
  }
  if (c === '-' && s[i + 1] === '-') {
    const nl = s.indexOf('\n', i);
    return nl < 0 ? s.length : nl + 1;
  }
  if (c === '/' && s[i + 1] === '*') {
    const end = s.indexOf('*/', i + 2);
    return end < 0 ? s.length : end + 2;
  }
  if (c === '$' && !isWordChar(s[i - 1])) {
    const m = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(s.slice(i, i + 80));
    if (m) {
      const end = s.indexOf(m[0], i + m[0].length);
      return end < 0 ? s.length : end + m[0].length;
    }
  }
  return -1;
}

function isWordChar(c: string | undefined): boolean {
  return c !== undefined && /[A-Za-z0-9_$\u0080-\uffff]/.test(c);
}

/** Statements and meta-command lines, in order; blank text between them is dropped. */
export function splitScript(script: string): ScriptPart[] {
  const parts: ScriptPart[] = [];
  let start = 0;
  let content = false; // the statement under way has more than blanks and comments
  let i = 0;
  while (i < script.length) {
    const c = script[i]!;
    if (c === '\\') {
      // psql reads a backslash outside literals as a meta-command to the end of the line.
      if (content) throw new Error(`a psql meta-command inside a statement: ${script.slice(start, i + 40)}`);
      const nl = script.indexOf('\n', i);
      const end = nl < 0 ? script.length : nl;
      parts.push({ kind: 'meta', text: script.slice(i, end) });
      i = start = end + 1;
      continue;
    }
    const skip = skipLiteral(script, i);
    if (skip >= 0) {
      if (c !== '-' && c !== '/') content = true;
      i = skip;
      continue;
    }
    if (c === ';') {
      const text = stripLeadingComments(script.slice(start, i + 1).trim());
      if (text !== ';') parts.push({ kind: 'statement', text });
      i = start = i + 1;
      content = false;
      continue;
    }
    if (!/\s/.test(c)) content = true;
    i++;
  }
  return parts;
}

function stripLeadingComments(text: string): string {
  let t = text;
  for (;;) {
    const m = /^(--[^\n]*\n|\/\*[^]*?\*\/|\s+)/.exec(t);
    if (!m) return t;
    t = t.slice(m[0].length);
  }
}

/** The statement's words outside literals, upper-cased, up to `n` of them (to classify it). */
export function leadingWords(statement: string, n: number): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < statement.length && words.length < n) {
    const skip = skipLiteral(statement, i);
    if (skip >= 0) {
      words.push(statement.slice(i, skip));
      i = skip;
      continue;
    }
    const m = /^[A-Za-z_][A-Za-z0-9_$]*/.exec(statement.slice(i));
    if (m) {
      words.push(m[0].toUpperCase());
      i += m[0].length;
    } else i++;
  }
  return words;
}

/**
 * Replace the name that follows the keyword DATABASE (outside literals) when it is `from` (as
 * the script spells it), with `to` (an identifier already quoted). Returns the new text.
 */
export function renameAfterDatabase(statement: string, from: string, to: string): string {
  let out = '';
  let i = 0;
  while (i < statement.length) {
    const skip = skipLiteral(statement, i);
    if (skip >= 0) {
      out += statement.slice(i, skip);
      i = skip;
      continue;
    }
    const m = /^DATABASE(\s+)/i.exec(statement.slice(i));
    if (m && !isWordChar(statement[i - 1])) {
      const at = i + m[0].length;
      if (statement.startsWith(from, at) && !isWordChar(statement[at + from.length]) && (from.endsWith('"') || statement[at + from.length] !== '"')) {
        out += statement.slice(i, at) + to;
        i = at + from.length;
        continue;
      }
      out += m[0];
      i += m[0].length;
      continue;
    }
    out += statement[i];
    i++;
  }
  return out;
}

/** The identifier token at the start of `text` (quoted or plain), or undefined. */
export function identAt(text: string): string | undefined {
  if (text.startsWith('"')) {
    const end = skipLiteral(text, 0);
    return text.slice(0, end);
  }
  return /^[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*/.exec(text)?.[0];
}

/** The name an identifier token stands for ("a""b" → a"b; Plain → plain). */
export function unquoteIdent(token: string): string {
  return token.startsWith('"') ? token.slice(1, -1).replace(/""/g, '"') : token.toLowerCase();
}
