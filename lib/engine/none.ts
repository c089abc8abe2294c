import type { Engine, EngineResult } from './types.js';

/**
 * Dumps only: other backup software (JetBackup, a provider's snapshots, rsync) copies the
 * files. Whether it keeps ACLs and xattrs is its job, so we write no sidecar (keepsAcls true).
 */
export const noneEngine: Engine = {
  name: 'none',
  keepsAcls: true,
  drivesBackup: false,
  async check() {
    /* nothing to check: no binary, no repository */
  },
  async backup(): Promise<EngineResult> {
    return { level: 'Snapshot', durationMs: 0, warnings: [] };
  },
};
