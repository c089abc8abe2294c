import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';

// The README's first command ends in `apiscp-backup demo`: it must keep working end to end.
const cli = resolve(import.meta.dirname, '../../dist/scripts/apiscp-backup.js');

describe('demo (the main job on the built-in sandbox)', () => {
  for (const engine of ['duplicity', 'restic', 'borg']) {
    it(`${engine}: installs, runs the nightly entry as cron would, restores and verifies`, async () => {
      const r = await execa(process.execPath, [cli, 'demo', '--engine', engine], { reject: false, env: { TERM: 'dumb' } });
      expect(r.stderr).toBe('');
      expect(r.exitCode).toBe(0);
      expect(r.stdout).toMatch(/ok {3}silent on success and exit 0/);
      expect(r.stdout).toMatch(/ok {3}site2 files: (\d+)\/\1 paths as in the backup .*shell.php removed/);
      expect(r.stdout).toMatch(/ok {3}site2_shop: row checksums as before it was dropped/);
      expect(r.stdout).toMatch(/ok {3}the other sites were not touched/);
      expect(r.stdout).toMatch(/ok {3}databases: 6\/6 restored dumps load into fresh databases with identical row checksums/);
      expect(r.stdout).not.toMatch(/FAIL/);
      expect(r.stdout).toMatch(/RESULT demo ok/);
      const sandbox = /sandbox (\/\S+)/.exec(r.stdout)?.[1];
      expect(sandbox && existsSync(sandbox)).toBe(false); // cleaned up without --keep
    });
  }
});
