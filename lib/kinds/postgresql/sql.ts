/** A PostgreSQL identifier in double quotes (a double quote inside doubled): any name, quoted once, here. */
export function pgIdent(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}

/**
 * A quoted identifier in ASCII whatever the name holds (U&"…" escapes), so it reads the same
 * under any client_encoding a script sets.
 */
export function asciiIdent(name: string): string {
  if (/^[\x20-\x7e]*$/.test(name)) return pgIdent(name);
  let body = '';
  for (const ch of name) {
    const cp = ch.codePointAt(0)!;
    if (ch === '"') body += '""';
    else if (ch === '\\') body += '\\\\';
    else if (cp >= 0x20 && cp <= 0x7e) body += ch;
    else body += cp > 0xffff ? `\\+${cp.toString(16).padStart(6, '0')}` : `\\${cp.toString(16).padStart(4, '0')}`;
  }
  return `U&"${body}"`;
}

/** A text as a string expression spelt in hex digits only: no character of a hostile name is ever quoted. */
export function hexText(text: string): string {
  return `convert_from(decode('${Buffer.from(text, 'utf8').toString('hex')}', 'hex'), 'UTF8')`;
}

/** A text expression's UTF-8 bytes in hex: what queries print names as (fromHex reads them back), whatever they hold. */
export function hexOf(expr: string): string {
  return `encode(convert_to(${expr}, 'UTF8'), 'hex')`;
}

export { fromHex } from '../../model/inventory.js';
