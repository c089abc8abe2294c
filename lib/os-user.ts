import { readFileSync } from 'node:fs';

export interface OsUser {
  readonly uid: number;
  readonly gid: number;
  readonly home: string;
}

/** /etc/passwd lookup: Node only knows the current user, and we must switch to `postgres`. */
export function osUser(name: string, passwd = '/etc/passwd'): OsUser | undefined {
  let text: string;
  try {
    text = readFileSync(passwd, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f.length >= 7) return { uid: Number(f[2]), gid: Number(f[3]), home: f[5] || '/' };
  }
  return undefined;
}
