import type { DatabaseKind, KindName } from '../model/kind.js';
import { mysqlKind } from './mysql/index.js';
import { postgresqlKind } from './postgresql/index.js';

/**
 * Every database kind, one line each: adding a kind means adding its folder here (its index
 * exports a DatabaseKind) and its line below; nothing outside lib/kinds branches on a kind's name.
 */
const KINDS: Readonly<Record<KindName, DatabaseKind>> = {
  mysql: mysqlKind,
  postgresql: postgresqlKind,
};

/** In the order dumps run and reports list them. */
export const allKinds: readonly DatabaseKind[] = Object.values(KINDS);

/** The kind a manifest entry or an option names, or undefined (a panel export's entry is no kind of ours). */
export function findKind(name: string): DatabaseKind | undefined {
  return Object.hasOwn(KINDS, name) ? KINDS[name as KindName] : undefined;
}

/** The kind a manifest entry, an option or a config section names; throws on a name no kind has. */
export function kindByName(name: string): DatabaseKind {
  const kind = findKind(name);
  if (!kind) throw new Error(`no database kind '${name}' (known: ${Object.keys(KINDS).join(', ')})`);
  return kind;
}

export { mysqlKind, postgresqlKind };
