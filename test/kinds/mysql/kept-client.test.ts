import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mysqlKind, type MysqlSession } from '../../../lib/kinds/mysql/index.js';
import { KeptClient } from '../../../lib/kinds/mysql/kept-client.js';
import { CommandError } from '../../../lib/errors.js';
import { memoryLogger } from '../../../lib/log.js';
import { cmd } from '../../../lib/proc/command.js';
import { startMariadb, type MariadbServer } from '../../../lib/throwaway/mariadb.js';
import { mysqlOnlyConfig } from '../../helpers/mysql-src.js';

// The throttle asks the server for Threads_running about once a second through the whole run:
// through one client kept open, not a process (a fork of ours) and a login per question.

let server: MariadbServer;
let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'asb-kept-'));
  server = await startMariadb();
}, 120_000);

afterAll(async () => {
  await server?.destroy();
  await rm(work, { recursive: true, force: true });
});

/** Logins the server has accepted so far (each of these reads is one more). */
async function logins(): Promise<number> {
  return Number((await server.sql("SHOW GLOBAL STATUS LIKE 'Connections'")).trim().split('\t')[1]);
}

function client(): KeptClient {
  return new KeptClient(cmd('mariadb', ['--no-defaults', `--socket=${server.socket}`, '--user=root', '--batch', '--skip-column-names']), [], 'the test query');
}

describe('queries through a kept client', () => {
  it("serverLoad logs in once for many questions, and the session's close ends that client", async () => {
    const session = (await mysqlKind.open({ loaded: mysqlOnlyConfig(work, server.socket), log: memoryLogger() })) as MysqlSession;
    try {
      const before = await logins();
      for (let i = 0; i < 5; i++) expect(await session.serverLoad!()).toBeGreaterThanOrEqual(0);
      // One login of the kept client, one of this second read.
      expect((await logins()) - before).toBe(2);
      const ours = await server.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND USER = 'root'");
      expect(Number(ours.trim())).toBe(1);
    } finally {
      await session.close();
    }
    // Its client has logged out: nobody but this read is connected.
    const left = await server.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND USER = 'root'");
    expect(Number(left.trim())).toBe(0);
  });

  it('a failed query ends its client with the error; the next query opens a new one', async () => {
    const kept = client();
    try {
      expect(await kept.rows('SELECT 1, HEX(\'a\');', 10_000)).toEqual([['1', '61']]);
      const before = await logins();
      const failed = await kept.rows('SELECT no_such_function();', 10_000).then(() => undefined, (e: unknown) => e);
      expect(failed).toBeInstanceOf(CommandError);
      expect((failed as CommandError).stderrTail).toMatch(/no_such_function/);
      expect(await kept.rows('SELECT 2;', 10_000)).toEqual([['2']]);
      expect((await logins()) - before).toBe(2); // the new client, and this read
    } finally {
      await kept.close();
    }
  });

  it('a query past its limit fails naming it, and the next query gets a new client', async () => {
    const kept = client();
    try {
      const t0 = Date.now();
      await expect(kept.rows("SELECT BENCHMARK(20000000000, MD5('kept-client-limit'));", 500)).rejects.toThrow(/the test query took longer than 0.5 s/);
      expect(Date.now() - t0).toBeLessThan(10_000);
      // Killed on the server too, not left running until the server writes to a client long gone.
      const running = await server.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%kept-client-limit%' AND INFO NOT LIKE '%PROCESSLIST%'");
      expect(Number(running.trim())).toBe(0);
      expect(await kept.rows('SELECT 3;', 10_000)).toEqual([['3']]);
    } finally {
      await kept.close();
    }
  });
});
