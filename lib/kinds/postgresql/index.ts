import type { DatabaseKind } from '../../model/kind.js';
import { expected, open, openTarget, POSTGRESQL_SIGNS } from './kind.js';
import * as scratch from './scratch.js';
import * as throwaway from './throwaway.js';

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
  throwawayKey: throwaway.throwawayKey,
  startThrowaway: throwaway.startThrowaway,
  pointInTime: false,
  scratchLoad: scratch.scratchLoad,
  checksums: scratch.checksums,
};
