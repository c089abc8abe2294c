import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';

/**
 * Build once per vitest run: the CLI tests run dist/scripts/apiscp-backup.js as a subprocess, the
 * way cron and Bacula run it. A build error fails the run (tests against a stale dist/ would lie).
 */
export default function setup(): void {
  const repo = resolve(import.meta.dirname, '..');
  try {
    execFileSync('npm', ['run', 'build'], { cwd: repo, stdio: 'pipe', encoding: 'utf8' });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`npm run build failed:\n${e.stdout ?? ''}${e.stderr ?? ''}`.trimEnd());
  }
}
