import type { DatabaseKind } from '../../model/kind.js';
import { expected, open, openTarget, POSTGRESQL_SIGNS } from './kind.js';
import * as scratch from './scratch.js';

/** PostgreSQL: everything the rest of lib/ asks of it goes through this object. */
export const postgresqlKind: DatabaseKind = {
  name: 'postgresql',
  serverWide: 'globals',
  words: { accounts: 'roles', account: 'role', privileges: 'privileges', lock: { done: 'set NOLOGIN', planned: 'it would set NOLOGIN', state: 'NOLOGIN' } },
  installSigns: POSTGRESQL_SIGNS,
  nameGlobs: (loaded) => loaded.config.databases.postgresql,
  expected,
  open,
  openTarget,
  verifyLoad: (input) => scratch.verifyLoad(postgresqlKind, input),
  scratchLoad: scratch.scratchLoad,
  checksums: scratch.checksums,
};

/** Where a PostgreSQL major version's binaries live (not on PATH): the sandbox's and the demo's servers start from them. */
export { findPgTool, pgBinDirs } from './bin.js';
