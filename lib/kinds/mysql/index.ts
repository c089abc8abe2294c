import type { DatabaseKind } from '../../model/kind.js';
import { expected, MYSQL_SIGNS, open, openTarget, siteOnDisk } from './kind.js';
import * as scratch from './scratch.js';
import * as throwaway from './throwaway.js';

/** MariaDB (and MySQL): everything the rest of lib/ asks of it goes through this object. */
export const mysqlKind: DatabaseKind = {
  name: 'mysql',
  serverWide: 'users',
  words: { accounts: 'accounts', account: 'account', privileges: 'grants', lock: { done: 'locked', planned: 'it would lock', state: 'locked' } },
  installSigns: MYSQL_SIGNS,
  nameGlobs: (loaded) => loaded.config.databases.mysql,
  expected,
  open,
  openTarget,
  siteOnDisk,
  verifyLoad: (input) => scratch.verifyLoad(mysqlKind, input),
  throwawayKey: throwaway.throwawayKey,
  startThrowaway: throwaway.startThrowaway,
  pointInTime: true,
  scratchLoad: scratch.scratchLoad,
  checksums: scratch.checksums,
};

// Point-in-time recovery (lib/binlog) is MariaDB's alone: it holds the kind's own session (the
// binlog position, the replay) and names tables the way the kind quotes them.
export type { MysqlSession } from './session.js';
export { mysqlIdent } from './sql.js';
/** A MariaDB dump's lock wait in words (the progress line, the run's state). */
export { lockWaitText } from './lock-wait-watch.js';
