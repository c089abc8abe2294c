import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolvePaths } from '../../../lib/config/paths.js';
import { configSchema } from '../../../lib/config/schema.js';
import { mysqlKind, type MysqlSession } from '../../../lib/kinds/mysql/index.js';
import { InventoryBatcher } from '../../../lib/kinds/mysql/inventory-batch.js';
import { memoryLogger } from '../../../lib/log.js';
import { startMariadb, type MariadbServer } from '../../../lib/throwaway/mariadb.js';

// A real MariaDB: the inventories several databases share one client for must be exactly the
// ones each reads alone, and a database whose table cannot be read (its data file is gone) must
// cost only its own inventory.
let server: MariadbServer;
let session: MysqlSession;
const NAMES = ['inv_a', 'inv b', "inv'c"];
const q = (name: string): string => '`' + name.replace(/`/g, '``') + '`';

beforeAll(async () => {
  server = await startMariadb();
  for (const [i, db] of NAMES.entries()) {
    await server.sql(`CREATE DATABASE ${q(db)}; USE ${q(db)}; CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO t SELECT seq FROM seq_1_to_${i + 2}; CREATE VIEW v AS SELECT id FROM t;`);
  }
  await server.sql('CREATE DATABASE inv_broken; USE inv_broken; CREATE TABLE m (id INT) ENGINE=MyISAM; INSERT INTO m VALUES (1), (2);');
  const config = configSchema.parse({ databases: { mysql: { enabled: true, socket: server.socket, defaults_file: '/nonexistent/absent.cnf' } } });
  session = (await mysqlKind.open({ loaded: { config, file: undefined, paths: resolvePaths(config) }, log: memoryLogger() })) as MysqlSession;
}, 120_000);

afterAll(async () => {
  await session?.close();
  await server?.destroy();
});

describe('dump-time inventories read in batches', { timeout: 120_000 }, () => {
  const long = new Date(Date.now() + 3_600_000); // "dump started later": nothing counts as written since

  it('several databases in one client give what each gives alone', async () => {
    const alone = new InventoryBatcher((sql, signal) => session.query(sql, signal), undefined);
    const singles = [];
    for (const db of NAMES) singles.push(await alone.read({ database: db, dumpStartedAt: long, skipped: [] }));
    expect(alone.batches).toBe(NAMES.length);
    // Each database has its own row count (2, 3, 4): a mix-up between batch members shows.
    expect(singles.map((i) => i.rows)).toEqual([{ t: 2 }, { t: 3 }, { t: 4 }]);
    expect(singles[1]!.objects).toMatchObject({ tables: ['t'], views: ['v'] });

    const together = new InventoryBatcher((sql, signal) => session.query(sql, signal), undefined);
    const batched = await Promise.all(NAMES.map((db) => together.read({ database: db, dumpStartedAt: long, skipped: [] })));
    // The first read starts at once, the two that arrived meanwhile share the second client.
    expect(together.batches).toBe(2);
    expect(batched.map(({ ms: _ms, ...rest }) => rest)).toEqual(singles.map(({ ms: _ms, ...rest }) => rest));
  });

  it('with a linger, reads arriving in turn share one client while other dumps run; the last ones do not wait', async () => {
    const lingering = new InventoryBatcher((sql, signal) => session.query(sql, signal), undefined, 50, 5_000);
    const tickets = NAMES.map(() => lingering.expect()); // three dumps started
    const reads: ReturnType<InventoryBatcher['read']>[] = [];
    const t0 = Date.now();
    for (const [i, db] of NAMES.entries()) {
      reads.push(tickets[i]!.read({ database: db, dumpStartedAt: long, skipped: [] }));
      await new Promise((r) => setTimeout(r, 30)); // dumps finishing one after another
    }
    expect((await Promise.all(reads)).map((i) => i.rows)).toEqual([{ t: 2 }, { t: 3 }, { t: 4 }]);
    expect(lingering.batches).toBe(1);
    // The third read left no dump running: the batch started then, not after the 5 s linger.
    expect(Date.now() - t0).toBeLessThan(2_500);

    // One dump asks while another runs; that one fails (its probe is closed unread): the wait ends.
    const [asking, failing] = [lingering.expect(), lingering.expect()];
    const t1 = Date.now();
    const lone = asking.read({ database: NAMES[0]!, dumpStartedAt: long, skipped: [] });
    await new Promise((r) => setTimeout(r, 100));
    expect(lingering.batches).toBe(1); // still waiting for company
    failing.cancel();
    failing.cancel(); // closing twice counts once
    expect((await lone).rows).toEqual({ t: 2 });
    expect(Date.now() - t1).toBeLessThan(2_500);
    expect(lingering.batches).toBe(2);

    // A read with nothing else running starts at once, however long the linger.
    const t2 = Date.now();
    expect((await lingering.expect().read({ database: NAMES[1]!, dumpStartedAt: long, skipped: [] })).rows).toEqual({ t: 3 });
    expect(Date.now() - t2).toBeLessThan(2_500);
    expect(lingering.batches).toBe(3);
  });

  it('a database whose table cannot be read fails alone; the others in its batch still get theirs', async () => {
    // The MyISAM data file removed under the server: COUNT(*) fails with "Can't find file".
    await server.sql('FLUSH TABLES');
    await rm(join(server.dataDir, 'inv_broken', 'm.MYD'));
    await server.sql('FLUSH TABLES');
    const batcher = new InventoryBatcher((sql, signal) => session.query(sql, signal), undefined);
    const first = batcher.read({ database: NAMES[0]!, dumpStartedAt: long, skipped: [] });
    const rest = ['inv_broken', NAMES[1]!, NAMES[2]!].map((db) => batcher.read({ database: db, dumpStartedAt: long, skipped: [] }).then((i) => i, (e: unknown) => e));
    expect((await first).rows).toEqual({ t: 2 });
    const [broken, b, c] = await Promise.all(rest);
    expect(String(broken)).toMatch(/m\.MYD|Can't find file|doesn't exist|Errcode/i);
    expect(b).toMatchObject({ rows: { t: 3 } });
    expect(c).toMatchObject({ rows: { t: 4 } });
    // 1 alone, 1 failed batch of three, then three alone.
    expect(batcher.batches).toBe(5);
  });

  it("the session's own reads share one client kept open; a failing read ends it and the next read gets a new one", async () => {
    const connections = async (): Promise<number> => Number((await server.sql("SHOW GLOBAL STATUS LIKE 'Connections'")).trim().split('\t')[1]);
    const probes = await Promise.all([...NAMES, 'inv_broken'].map(async (db) => (await session.planDatabase(db)).inventory!()));
    const read = (i: number): Promise<unknown> => probes[i]!.read(long).then((inv) => inv, (e: unknown) => e);
    const before = await connections();
    for (const [i, t] of [2, 3, 4].entries()) expect(await read(i)).toMatchObject({ rows: { t } });
    // One login for the three reads, one for this status query itself.
    expect((await connections()) - before).toBe(2);
    expect(String(await read(3))).toMatch(/m\.MYD|Can't find file|doesn't exist|Errcode/i);
    expect(await read(0)).toMatchObject({ rows: { t: 2 } });
  });
});
