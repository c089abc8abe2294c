import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { cmd, type Command } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';
import { whichSystem } from '../../lib/proc/which.js';
import { exitClasses } from '../../lib/proc/exit-status.js';

/**
 * Network namespaces for multi-host tests: one hub namespace holding a bridge, and one namespace
 * per other host joined to it by a veth pair. Addresses come from a private test range and exist
 * only inside the namespaces: the host's own namespace gets no interface, no address and no route,
 * so no packet can leave the machine. Filesystems stay shared (every "host" needs its own root,
 * state, lock and sockets, which the callers give it).
 *
 * Namespaces are named `<PREFIX><pid>-<host>`: a later run deletes the leftovers of a crashed one
 * (its pid is gone), never another live run's.
 */

export const NETNS_PREFIX = 'asbf';
const IP_TIMEOUT_MS = 10_000;

export interface NetHost {
  /** Short name given by the caller (dir, s1…). */
  readonly name: string;
  /** The namespace (`ip netns exec <netns> …`). */
  readonly netns: string;
  /** Its address on the test network (no prefix length). */
  readonly address: string;
}

export interface TestNetwork {
  readonly hub: NetHost;
  readonly hosts: readonly NetHost[];
  host(name: string): NetHost;
  /** `command` run inside the host's namespace (argv stays argv: ip netns exec execs it). */
  inside(host: string, command: Command): Command;
  /** Kill what still runs inside our namespaces, then delete them. Safe to call twice. */
  destroy(): Promise<void>;
}

export interface NetworkOptions {
  /** The hub (bridge) host; the director lives here. */
  hub: string;
  hosts: readonly string[];
  /** First three octets of a /24 (default 10.213.77): private, and only inside the namespaces. */
  subnet?: string;
}

function ipBinary(): string {
  const ip = whichSystem('ip');
  if (!ip) throw new Error('ip not found: apt-get install iproute2');
  return ip;
}

async function ip(args: readonly string[], alsoOk: readonly number[] = []): Promise<string> {
  return (await run(cmd(ipBinary(), args), { timeoutMs: IP_TIMEOUT_MS, exitClass: exitClasses({ ok: alsoOk }) })).stdout;
}

const pidAlive = (pid: number): boolean => existsSync(`/proc/${pid}`);

/** Our namespaces that exist now (optionally only those of one owner pid). */
export async function listTestNamespaces(ownerPid?: number): Promise<string[]> {
  const out = await ip(['netns', 'list']);
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.startsWith(NETNS_PREFIX) && (ownerPid === undefined || n.startsWith(`${NETNS_PREFIX}${ownerPid}-`)));
}

/** Kill every process inside a namespace and delete it. */
async function removeNamespace(netns: string): Promise<void> {
  for (let round = 0; round < 20; round++) {
    const pids = (await ip(['netns', 'pids', netns], [1])).split(/\s+/).filter(Boolean).map(Number);
    if (pids.length === 0) break;
    for (const pid of pids) try { process.kill(pid, round === 0 ? 'SIGTERM' : 'SIGKILL'); } catch { /* gone */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  // Deleting the namespace destroys its veth ends (and so their peers) and the bridge with it.
  await ip(['netns', 'delete', netns], [1]);
}

/** Remove namespaces left by earlier runs whose process is gone (a crash, a killed worker). */
export async function cleanupLeftovers(): Promise<string[]> {
  const removed: string[] = [];
  for (const ns of await listTestNamespaces()) {
    const owner = Number(/^\D+(\d+)-/.exec(ns)?.[1]);
    if (Number.isFinite(owner) && owner !== process.pid && !pidAlive(owner)) {
      await removeNamespace(ns);
      removed.push(ns);
    }
  }
  return removed;
}

/**
 * The hub's bridge and one veth pair per host. Interface names (at most 15 bytes) exist only inside
 * our namespaces, so every host's end can be eth0.
 */
export async function createNetwork(opts: NetworkOptions): Promise<TestNetwork> {
  const subnet = opts.subnet ?? '10.213.77';
  if (!/^10\.\d{1,3}\.\d{1,3}$/.test(subnet)) throw new Error(`subnet ${subnet}: use a 10.x.y test range`);
  const names = [opts.hub, ...opts.hosts];
  if (new Set(names).size !== names.length || names.some((n) => !/^[a-z0-9]{1,8}$/.test(n))) throw new Error(`host names must be unique, [a-z0-9]{1,8}: ${names.join(', ')}`);
  if (names.length > 200) throw new Error('at most 200 hosts on one /24');
  await cleanupLeftovers();

  const hub: NetHost = { name: opts.hub, netns: `${NETNS_PREFIX}${process.pid}-${opts.hub}`, address: `${subnet}.1` };
  const hosts: NetHost[] = opts.hosts.map((name, i) => ({ name, netns: `${NETNS_PREFIX}${process.pid}-${name}`, address: `${subnet}.${i + 10}` }));
  const created: string[] = [];

  // A test process that ends without destroy() (a crash, vitest killing a worker) must not leave
  // namespaces and the daemons in them behind. 'exit' handlers run synchronously: spawnSync.
  const onExit = (): void => {
    for (const ns of created) {
      const pids = spawnSync(ipBinary(), ['netns', 'pids', ns], { encoding: 'utf8' }).stdout ?? '';
      for (const pid of pids.split(/\s+/).filter(Boolean)) try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ }
      spawnSync(ipBinary(), ['netns', 'delete', ns]);
    }
  };
  process.once('exit', onExit);
  const destroy = async (): Promise<void> => {
    const errors: string[] = [];
    for (const ns of created.splice(0).reverse()) await removeNamespace(ns).catch((e: Error) => errors.push(`${ns}: ${e.message}`));
    process.removeListener('exit', onExit);
    if (errors.length) throw new Error(`could not remove test namespaces:\n${errors.join('\n')}`);
  };

  try {
    for (const h of [hub, ...hosts]) {
      await ip(['netns', 'add', h.netns]);
      created.push(h.netns);
      await ip(['-n', h.netns, 'link', 'set', 'lo', 'up']);
    }
    await ip(['-n', hub.netns, 'link', 'add', 'br0', 'type', 'bridge']);
    await ip(['-n', hub.netns, 'addr', 'add', `${hub.address}/24`, 'dev', 'br0']);
    await ip(['-n', hub.netns, 'link', 'set', 'br0', 'up']);
    for (const [i, h] of hosts.entries()) {
      const hubSide = `v${i}`;
      // Both ends are created directly in their namespaces: the host namespace never sees them.
      await ip(['link', 'add', hubSide, 'netns', hub.netns, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.netns]);
      await ip(['-n', hub.netns, 'link', 'set', hubSide, 'master', 'br0']);
      await ip(['-n', hub.netns, 'link', 'set', hubSide, 'up']);
      await ip(['-n', h.netns, 'addr', 'add', `${h.address}/24`, 'dev', 'eth0']);
      await ip(['-n', h.netns, 'link', 'set', 'eth0', 'up']);
    }
  } catch (err) {
    await destroy().catch(() => undefined);
    throw err;
  }

  const all = [hub, ...hosts];
  const host = (name: string): NetHost => {
    const h = all.find((x) => x.name === name);
    if (!h) throw new Error(`no host ${name} in the test network`);
    return h;
  };
  return {
    hub,
    hosts,
    host,
    inside: (name, command) => ({ ...command, file: ipBinary(), args: ['netns', 'exec', host(name).netns, command.file, ...command.args] }),
    destroy,
  };
}

/**
 * True once process `pid` (a daemon inside a namespace) has a TCP socket listening on `port`.
 * /proc/<pid>/net/tcp shows the socket table of THAT process's network namespace, so this works
 * from outside without entering it.
 */
export function listensOn(pid: number, port: number): boolean {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  try {
    return readFileSync(`/proc/${pid}/net/tcp`, 'utf8')
      .split('\n')
      .slice(1)
      .some((l) => {
        const f = l.trim().split(/\s+/);
        return f[1]?.endsWith(`:${hex}`) && f[3] === '0A';
      });
  } catch {
    return false;
  }
}

export interface HostView {
  /** The holder process whose namespaces the host's processes join. */
  readonly pid: number;
  /**
   * `command` inside the host's network AND mount namespaces (nsenter execs it: same pid). A
   * command's uid/gid become nsenter's -S/-G: entering needs root, the switch happens after.
   */
  inside(command: Command): Command;
}

/**
 * A private mount namespace for a test host (inside its network namespace) in which `real` is
 * bind-mounted on `common`: every host then sees its own files at the same path, as real servers
 * all have /home/virtual and /var/backup. The holder (`sleep infinity`) keeps the namespace alive;
 * it lives in the host's network namespace, so TestNetwork.destroy() kills it with the rest.
 */
export async function privateRoot(net: TestNetwork, host: string, real: string, common: string): Promise<HostView> {
  const netns = net.host(host).netns;
  const holder = spawn(ipBinary(), ['netns', 'exec', netns, 'unshare', '--mount', '--propagation', 'private', 'sleep', 'infinity'], { detached: true, stdio: 'ignore' });
  holder.unref();
  const pid = holder.pid!;
  const ours = readlinkSync('/proc/self/ns/mnt');
  const deadline = Date.now() + IP_TIMEOUT_MS;
  // unshare has run once the holder's mount namespace differs from ours and it runs sleep.
  while (!(existsSync(`/proc/${pid}`) && readlinkSync(`/proc/${pid}/ns/mnt`) !== ours && readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep')) {
    if (Date.now() > deadline || holder.exitCode !== null) throw new Error(`the mount namespace holder for ${host} did not start`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const nsenter = whichSystem('nsenter');
  if (!nsenter) throw new Error('nsenter not found: apt-get install util-linux');
  await run(cmd(nsenter, ['-t', String(pid), '-m', 'mount', '--bind', real, common]), { timeoutMs: IP_TIMEOUT_MS });
  return {
    pid,
    inside: ({ uid, gid, ...c }) => ({
      ...c,
      file: nsenter,
      args: ['-t', String(pid), '-m', '-n', ...(uid !== undefined ? ['-S', String(uid)] : []), ...(gid !== undefined ? ['-G', String(gid)] : []), '--', c.file, ...c.args],
    }),
  };
}
