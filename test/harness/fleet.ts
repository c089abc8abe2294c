import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type LoadedConfig } from '../../lib/config/load.js';
import { cmd, type Command } from '../../lib/proc/command.js';
import { buildApiscpTree, type TreeInfo } from '../../lib/demo/apiscp-tree.js';
import { startMariadb, type MariadbServer } from '../../lib/throwaway/mariadb.js';
import { startPostgres, type PostgresServer } from '../../lib/throwaway/postgres.js';
import { CLI, NODE, cli } from '../helpers/e2e.js';
import { EXPORT_SCOPE, FAKE_CPCMD, REPO } from '../helpers/sandbox.js';
import {
  binary, bconsoleConfig, bconsoleRunner, daemonSet, fdConfig, holdSchedules, jobOutcome, password, prepareCatalog, sdConfig, stockDirectorConfig, testDirectorConfig,
  type Bconsole, type JobOutcome,
} from './bacula.js';
import { createNetwork, listensOn, privateRoot, type TestNetwork } from './netns.js';

/**
 * A fleet on one machine: a director host (bacula-dir + bacula-sd + its own bacula-fd) and N
 * ApisCP servers, each in its own network namespace (./netns.ts) and mount namespace with its own
 * bacula-fd, MariaDB (mariadbd runs inside the server's namespaces), optionally PostgreSQL, an
 * ApisCP site tree with ACLs and xattrs, its own paths.root (state, lock, dumps) and TMPDIR, and
 * the BUILT CLI as the hook its file daemon runs. Every server sees its root at the same path
 * (a private bind mount), as real servers all have /home/virtual: the catalog holds the same
 * paths for every client, which a restore onto another server needs. The director's config is the stock layout plus, per server, what
 * `apiscp-backup bacula config --address …` prints on that server.
 *
 * MariaDB and PostgreSQL run inside the server's namespaces and listen on Unix sockets only.
 */

export const DIR_PORT = 9101;
export const FD_PORT = 9102;
export const SD_PORT = 9103;
const STARTUP_MS = 30_000;

export interface FleetServerSpec {
  /** Host name: [a-z0-9]{1,8}. */
  name: string;
  postgres?: boolean;
  sites?: number;
}

export interface FleetServer {
  readonly name: string;
  readonly client: string;
  readonly job: string;
  readonly address: string;
  readonly netns: string;
  /** Where its files really are (the test's view). */
  readonly root: string;
  /** Where the server itself sees them: the same path on every server (paths.root in its config). */
  readonly common: string;
  /** Its config as the server sees it (under `common`). */
  readonly configFile: string;
  /** Its config loaded with the real root: state, dumps, lock as the test sees them. */
  readonly loaded: LoadedConfig;
  /** A command run on this server: its network and mount namespaces. */
  inside(command: Command): Command;
  /** The panel stand-in's state file (write sites into it with setPanelSites). */
  readonly panelState: string;
  /** What the file daemon (and so every hook) runs with: the panel stand-in, its own TMPDIR. */
  readonly env: Readonly<Record<string, string>>;
  readonly tree: TreeInfo;
  readonly my: MariadbServer;
  readonly pg?: PostgresServer;
}

export interface Fleet {
  readonly base: string;
  readonly net: TestNetwork;
  readonly servers: readonly FleetServer[];
  readonly director: {
    readonly name: string;
    readonly address: string;
    readonly configFile: string;
    readonly bconsoleConfigFile: string;
    readonly workDir: string;
    /** bacula-dir's pid (inside the hub namespace): for CPU/memory measurements. */
    readonly pid: number;
    /** A command run on the director host (inside its namespace). */
    inside(command: Command): Command;
  };
  bconsole: Bconsole;
  server(name: string): FleetServer;
  /** Queue these servers' jobs in one bconsole session; their job ids. */
  queueJobs(names: readonly string[], level?: string): Promise<Map<string, number>>;
  /** Wait for queued jobs; their outcomes. */
  waitJobs(ids: ReadonlyMap<string, number>): Promise<Map<string, JobOutcome>>;
  /** queueJobs, then waitJobs. */
  runJobs(names: readonly string[], level?: string): Promise<Map<string, JobOutcome>>;
  stop(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function panelEnv(common: string): Record<string, string> {
  return { TMPDIR: join(common, 'tmp'), CPCMD: FAKE_CPCMD, FAKE_APISCP_STATE: join(common, 'fake-apiscp.json'), FAKE_APISCP_LOG: join(common, 'fake-apiscp.log'), FAKE_APISCP_HOME: join(common, 'home/virtual') };
}

/** The sites the server's panel knows, with the databases each owns (prefix `siteN_`). */
export function setPanelSites(server: FleetServer, sites: Record<string, { mysql?: string[]; pgsql?: string[] }>): void {
  const entries = Object.entries(sites).map(([id, s]) => [id, { domain: `${id}.${server.name}.test`, active: true, mysql: s.mysql ?? [], pgsql: s.pgsql ?? [], prefix: `${id}_`, admin: `admin${id.replace(/\D/g, '')}` }]);
  writeFileSync(server.panelState, JSON.stringify({ scopes: { [EXPORT_SCOPE]: false }, sites: Object.fromEntries(entries) }));
}

export async function startFleet(specs: readonly FleetServerSpec[], opts: { keep?: boolean } = {}): Promise<Fleet> {
  const [dirBin, sdBin, fdBin] = ['bacula-dir', 'bacula-sd', 'bacula-fd'].map(binary) as [string, string, string];
  const base = mkdtempSync(join(tmpdir(), 'fleet-'));
  chmodSync(base, 0o755); // postgres must traverse to its data dir below
  const net = await createNetwork({ hub: 'dir', hosts: specs.map((s) => s.name) });
  const daemons = daemonSet(base);
  const dbs: { destroy(): Promise<void> }[] = [];
  const stop = async (): Promise<void> => {
    await daemons.stop();
    await Promise.allSettled(dbs.map((d) => d.destroy()));
    await net.destroy();
    if (!opts.keep) rmSync(base, { recursive: true, force: true });
  };

  try {
    const directorName = 'fleet-dir';
    const pw = { console: password(), sd: password(), dirFd: password() };
    const dirWork = join(base, 'director');
    const dirDirs = { work: join(dirWork, 'work'), sd: join(dirWork, 'sd'), fd: join(dirWork, 'fd'), volumes: join(dirWork, 'volumes'), data: join(dirWork, 'data'), etc: join(dirWork, 'etc') };
    for (const d of Object.values(dirDirs)) mkdirSync(d, { recursive: true, mode: 0o700 });

    // The servers: databases, site tree, config, file daemon config, the director fragment. Each
    // sees its own files at the same path (`common`, its private bind mount), like real servers.
    const common = join(base, 'root');
    mkdirSync(common, { mode: 0o755 });
    const servers = await Promise.all(
      specs.map(async (spec): Promise<{ server: FleetServer; fdConf: string; fragment: string }> => {
        const host = net.host(spec.name);
        const root = join(base, spec.name);
        mkdirSync(root, { mode: 0o755 });
        mkdirSync(join(root, 'tmp'), { mode: 0o700 });
        const view = await privateRoot(net, spec.name, root, common);
        const launcher = ((c) => [c.file, ...c.args.slice(0, -1)])(view.inside(cmd('mariadbd')));
        const [my, pg] = await Promise.all([
          startMariadb({ baseDir: root, launcher }).then((m) => (dbs.push(m), m)),
          spec.postgres ? startPostgres({ baseDir: join(root, 'pg'), wrapStart: view.inside }).then((p) => (dbs.push(p), p)) : undefined,
        ]);
        const tree = await buildApiscpTree(root, { sites: spec.sites ?? 2 });
        const client = `${spec.name}-fd`;
        const job = `${spec.name}-ApisCP`;
        const etc = 'etc/apiscp-backup/config.yaml';
        mkdirSync(join(root, 'etc/apiscp-backup'), { recursive: true });
        writeFileSync(
          join(root, etc),
          JSON.stringify({
            engine: 'bacula',
            paths: { root: common },
            panel: { enabled: true },
            // bconsole for `list`/`restore … --from-client` on this server: a console on the director.
            bacula: { client, job, fileset: job, bconsole_config: join(dirDirs.etc, 'bconsole.conf') },
            // Long enough for the fleet test to hold every server's lock while the director runs all jobs.
            lock: { wait: '60s' },
            // A stopped MariaDB is retried once after 30 s by default: 2 s keeps the test short.
            dumps: { retry_wait: '2s' },
            databases: {
              mysql: { enabled: true, socket: my.socket, defaults_file: join(common, 'no-my.cnf') },
              postgresql: pg ? { enabled: true, host: pg.socketDir, port: pg.port } : { enabled: false },
              // The site owners' scheduled exports (panel.owner_exports) run the stand-in's backup_dbs.php.
              apnscp: { php: join(REPO, 'sandbox/fake-apiscp/apnscp_php'), script: join(REPO, 'sandbox/fake-apiscp/backup_dbs.php') },
            },
          }, null, 2) + '\n',
          { mode: 0o600 },
        );
        // The panel stand-in (sandbox/fake-apiscp): which site owns which database; the test fills it.
        const panelState = join(root, 'fake-apiscp.json');
        writeFileSync(panelState, JSON.stringify({ scopes: { [EXPORT_SCOPE]: false }, sites: {} }));
        const fdPassword = password();
        writeFileSync(join(root, 'etc/bacula-fd.password'), fdPassword + '\n', { mode: 0o600 });
        mkdirSync(join(root, 'bacula-fd'), { recursive: true, mode: 0o700 });
        const fdConf = join(common, 'etc/bacula-fd.conf');
        writeFileSync(join(root, 'etc/bacula-fd.conf'), fdConfig(directorName, client, FD_PORT, fdPassword, join(common, 'bacula-fd'), host.address), { mode: 0o600 });
        // What the admin runs on each server and pastes into the director: our own output.
        const bc = view.inside(cmd(NODE, [CLI, '--config', join(common, etc), 'bacula', 'config', '--jobdefs', 'DefaultJob', '--node', NODE, '--entry', CLI, '--address', host.address, '--password-file', join(common, 'etc/bacula-fd.password')]));
        const r = await cli(bc.args, { file: bc.file });
        if (r.code !== 0) throw new Error(`bacula config on ${spec.name} failed:\n${r.stderr}`);
        return {
          server: {
            name: spec.name, client, job, address: host.address, netns: host.netns, root, common, configFile: join(common, etc),
            loaded: loadConfig({ file: join(root, etc), root }), tree, my, pg, inside: view.inside, panelState, env: panelEnv(common),
          },
          fdConf,
          fragment: `# --- from ${spec.name}\n${r.stdout}`,
        };
      }),
    );

    writeFileSync(join(dirDirs.work, 'query.sql'), '');
    await prepareCatalog(dirDirs.work);
    const files = { dir: join(dirDirs.etc, 'bacula-dir.conf'), sd: join(dirDirs.etc, 'bacula-sd.conf'), fd: join(dirDirs.etc, 'bacula-fd.conf'), con: join(dirDirs.etc, 'bconsole.conf') };
    const stock = stockDirectorConfig({
      directorName, dirPort: DIR_PORT, consolePassword: pw.console, workDir: dirDirs.work, clientName: 'dir-fd', fdPort: FD_PORT, fdPassword: pw.dirFd,
      sdPort: SD_PORT, sdPassword: pw.sd, logFile: join(dirWork, 'bacula.log'), dataDir: dirDirs.data, address: net.hub.address,
    });
    writeFileSync(files.dir, [stock, ...servers.map((s) => s.fragment)].join('\n'), { mode: 0o600 });
    writeFileSync(files.sd, sdConfig(directorName, SD_PORT, pw.sd, dirDirs.sd, dirDirs.volumes, undefined, net.hub.address), { mode: 0o600 });
    writeFileSync(files.fd, fdConfig(directorName, 'dir-fd', FD_PORT, pw.dirFd, dirDirs.fd, net.hub.address), { mode: 0o600 });
    writeFileSync(files.con, bconsoleConfig(directorName, DIR_PORT, pw.console, net.hub.address), { mode: 0o600 });
    const checked = await testDirectorConfig(files.dir);
    if (!checked.ok) throw new Error(`director config rejected by bacula-dir -t:\n${checked.output}`);

    const inHub = (c: Command): Command => net.inside('dir', c);
    const waitFor: [number, number][] = [];
    const startIn = (host: string, c: Command, name: string, port: number): number => {
      const child = daemons.start(net.inside(host, c), name);
      waitFor.push([child.pid!, port]);
      return child.pid!;
    };
    startIn('dir', cmd(sdBin, ['-f', '-c', files.sd]), 'dir-sd', SD_PORT);
    startIn('dir', cmd(fdBin, ['-f', '-c', files.fd]), 'dir-fd', FD_PORT);
    for (const { server, fdConf } of servers) {
      // The hook inherits the file daemon's environment: its own TMPDIR, nothing of ours.
      const child = daemons.start(server.inside(cmd(fdBin, ['-f', '-c', fdConf], { env: server.env })), `${server.name}-fd`);
      waitFor.push([child.pid!, FD_PORT]);
    }
    const dirPid = startIn('dir', cmd(dirBin, ['-f', '-c', files.dir]), 'dir', DIR_PORT);
    const bconsole = bconsoleRunner(files.con, inHub);

    const deadline = Date.now() + STARTUP_MS;
    for (;;) {
      const dead = daemons.dead();
      if (dead) throw new Error(`a Bacula daemon exited on start (${dead.spawnargs.join(' ')}); see ${base}/*.out`);
      // bconsole retries a refused connection only every 5 s: see the sockets listen first.
      const up = waitFor.every(([pid, port]) => listensOn(pid, port));
      const out = up ? await bconsole('status dir').catch((e: Error) => e.message) : 'not listening yet';
      if (/Daemon started/.test(out)) break;
      if (Date.now() > deadline) throw new Error(`the fleet director did not answer in ${STARTUP_MS / 1000}s:\n${out}`);
      await sleep(50);
    }

    // A labelled volume up front: the first job of an empty pool labels one itself and every other
    // job waits on the storage meanwhile ("is waiting on Storage"), which would serialize them.
    await holdSchedules(bconsole);
    const label = await bconsole('label storage=File1 pool=File volume=Fleet-0001');
    if (!/successfully created|Volume .* already exists/i.test(label)) throw new Error(`could not label the first volume:\n${label}`);

    const list = servers.map((s) => s.server);
    const server = (name: string): FleetServer => {
      const s = list.find((x) => x.name === name);
      if (!s) throw new Error(`no server ${name}`);
      return s;
    };
    const queueJobs = async (names: readonly string[], level = 'Full'): Promise<Map<string, number>> => {
      // One bconsole session queues them all: a job takes about as long as a bconsole login.
      const out = await bconsole(names.map((n) => `run job=${JSON.stringify(server(n).job)} level=${level} yes`).join('\n'));
      const queued = [...out.matchAll(/JobId=(\d+)/g)].map((m) => Number(m[1]));
      if (queued.length !== names.length) throw new Error(`queued ${queued.length} of ${names.length} jobs:\n${out}`);
      return new Map(names.map((n, i) => [n, queued[i]!] as const));
    };
    const waitJobs = async (ids: ReadonlyMap<string, number>): Promise<Map<string, JobOutcome>> => {
      const out = new Map<string, JobOutcome>();
      await Promise.all([...ids].map(async ([n, id]) => out.set(n, await jobOutcome(bconsole, id))));
      return out;
    };
    return {
      base,
      net,
      servers: list,
      director: { name: directorName, address: net.hub.address, configFile: files.dir, bconsoleConfigFile: files.con, workDir: dirDirs.work, pid: dirPid, inside: inHub },
      bconsole,
      server,
      queueJobs,
      waitJobs,
      runJobs: async (names, level = 'Full') => waitJobs(await queueJobs(names, level)),
      stop,
    };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}
