import { leadingWords, skipLiteral, splitScript } from './script.js';

/**
 * What in a PostgreSQL archive's schema runs a function of the dump's own while its rows are
 * loaded: CHECK constraints (of tables and domains), generated columns and partition keys are
 * evaluated by COPY as the user pg_restore is, the superuser, whoever owns the table (index
 * builds and materialized views, by contrast, run as their owner: PostgreSQL sees to that).
 * A tenant's function there would run as the superuser (COPY … TO PROGRAM: a shell as postgres),
 * so such a dump is refused rather than loaded. pg_dump qualifies every function outside
 * pg_catalog (it dumps with an empty search_path), so `schema.name(` and `OPERATOR(schema.`
 * find them.
 */
export function codeRunDuringLoad(schema: string): string[] {
  const found: string[] = [];
  for (const part of splitScript(schema)) {
    if (part.kind !== 'statement') continue;
    const w = leadingWords(part.text, 3);
    const what = w[0] === 'CREATE' && (w[1] === 'TABLE' || w[1] === 'DOMAIN' || w[1] === 'UNLOGGED') ? `${w[1] === 'DOMAIN' ? 'domain' : 'table'} ${objectName(part.text)}` : w[0] === 'ALTER' && (w[1] === 'TABLE' || w[1] === 'DOMAIN') ? `${w[1].toLowerCase()} ${objectName(part.text)}` : undefined;
    if (!what) continue;
    // A constraint added NOT VALID is not checked against the rows being loaded.
    if (w[0] === 'ALTER' && /\bNOT VALID;$/i.test(part.text)) continue;
    for (const span of evaluatedSpans(part.text)) {
      const call = userCall(span.text);
      if (call) found.push(`${what}: ${span.clause} calls ${call}`);
    }
  }
  return found;
}

function objectName(statement: string): string {
  const m = /^(?:CREATE|ALTER)\s+(?:UNLOGGED\s+)?(?:TABLE|DOMAIN)\s+(?:ONLY\s+)?(?:IF\s+EXISTS\s+)?((?:"(?:[^"]|"")*"|[^\s(])+)/i.exec(statement);
  return m?.[1] ?? '?';
}

/** The parenthesised expressions after CHECK, GENERATED ALWAYS AS and PARTITION BY <strategy>. */
function evaluatedSpans(statement: string): { clause: string; text: string }[] {
  const spans: { clause: string; text: string }[] = [];
  let i = 0;
  while (i < statement.length) {
    const skip = skipLiteral(statement, i);
    if (skip >= 0) {
      i = skip;
      continue;
    }
    const rest = statement.slice(i, i + 64);
    const m = /^(CHECK|GENERATED\s+ALWAYS\s+AS|PARTITION\s+BY\s+[A-Za-z]+)\s*\(/i.exec(rest);
    if (m && !/[A-Za-z0-9_$]/.test(statement[i - 1] ?? ' ')) {
      const open = i + m[0].length - 1;
      const close = matchingParen(statement, open);
      spans.push({ clause: m[1]!.replace(/\s+/g, ' ').toUpperCase(), text: statement.slice(open, close) });
      i = close;
      continue;
    }
    i++;
  }
  return spans;
}

function matchingParen(s: string, open: number): number {
  let depth = 0;
  for (let i = open; i < s.length; ) {
    const skip = skipLiteral(s, i);
    if (skip >= 0) {
      i = skip;
      continue;
    }
    if (s[i] === '(') depth++;
    else if (s[i] === ')' && --depth === 0) return i + 1;
    i++;
  }
  return s.length;
}

const NAME = '(?:"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*)';
const CALL = new RegExp(`(?:OPERATOR\\(\\s*(${NAME})\\.([^)]*)\\)|(${NAME})\\.(${NAME})\\s*\\()`, 'gi');

/** The first function or operator outside pg_catalog the expression uses (literals masked). */
function userCall(expression: string): string | undefined {
  let masked = '';
  for (let i = 0; i < expression.length; ) {
    const skip = skipLiteral(expression, i);
    if (skip >= 0 && expression[i] !== '"') {
      masked += ' '.repeat(skip - i);
      i = skip;
    } else if (skip >= 0) {
      masked += expression.slice(i, skip);
      i = skip;
    } else masked += expression[i++];
  }
  for (const m of masked.matchAll(CALL)) {
    const schema = m[1] ?? m[3]!;
    if (schema === 'pg_catalog' || schema === '"pg_catalog"') continue;
    return m[1] ? `OPERATOR(${m[1]}.${m[2]})` : `${m[3]}.${m[4]}()`;
  }
  return undefined;
}
