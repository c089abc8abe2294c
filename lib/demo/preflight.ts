import { MissingDependencyError } from '../errors.js';
import { findPgTool } from '../throwaway/postgres-bin.js';
import { whichSystem } from '../proc/which.js';
import type { EngineName } from '../engine/types.js';

/** What the demo needs, with the Debian package that brings each program. */
const NEEDS: readonly (readonly [binary: string, debianPackage: string, rhelPackage: string])[] = [
  ['mariadbd', 'mariadb-server', 'mariadb-server'],
  ['mariadb-dump', 'mariadb-client', 'mariadb'],
  ['pg_ctl', 'postgresql', 'postgresql-server'],
  ['zstd', 'zstd', 'zstd'],
  ['getfacl', 'acl', 'acl'],
  ['getfattr', 'attr', 'attr'],
  ['run-parts', 'debianutils', 'crontabs'],
];

const ENGINE_NEEDS: Partial<Record<EngineName, readonly [string, string, string]>> = {
  duplicity: ['duplicity', 'duplicity', 'duplicity'],
  restic: ['restic', 'restic', 'restic'],
  borg: ['borg', 'borgbackup', 'borgbackup'],
};

/** Name every missing program at once, with the one command that installs them all. */
export function preflight(engine: EngineName): void {
  const wanted = [...NEEDS, ...(ENGINE_NEEDS[engine] ? [ENGINE_NEEDS[engine]!] : [])];
  const missing = wanted.filter(([binary]) => {
    if (binary === 'pg_ctl') return findPgTool('pg_ctl') === undefined;
    return !whichSystem(binary);
  });
  if (process.getuid?.() !== 0) throw new MissingDependencyError('root', undefined, undefined);
  if (missing.length > 0) {
    const err = new MissingDependencyError(missing.map(([b]) => b).join(', '), missing.map(([, d]) => d).join(' '), missing.map(([, , r]) => r).join(' '));
    err.message += ' (or run: bash scripts/install-deps.sh)';
    throw err;
  }
}
