import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { restoreAcls } from '../../lib/engine/acl-restore.js';
import { writeAclSidecar } from '../../lib/engine/acl-sidecar.js';
import { cmd, quote } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';
import { bin, timed, type Sample } from './measure.js';

const FILES_PER_DIR = 500;
const XATTR_MATCH = "'^(user|trusted|security)\\.'";

/**
 * A site-like tree of `inodes` files and directories: every inode carries an extended ACL (as
 * Fortification leaves them) and every 10th file a user xattr. Built with one setfacl -R and one
 * setfattr --restore, so generation stays short.
 */
export async function makeAclTree(dir: string, inodes: number): Promise<{ inodes: number; xattrs: number }> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const dirs = Math.max(1, Math.ceil(inodes / (FILES_PER_DIR + 1)));
  const xattrLines: string[] = [];
  let count = 1;
  for (let d = 0; d < dirs && count < inodes; d++) {
    const sub = join(dir, `d${String(d).padStart(4, '0')}`);
    mkdirSync(sub);
    count++;
    for (let f = 0; f < FILES_PER_DIR && count < inodes; f++, count++) {
      const file = join(sub, `f${f}.php`);
      closeSync(openSync(file, 'w'));
      if (f % 10 === 0) xattrLines.push(`# file: ${file}`, `user.apiscp.tag=0x${Buffer.from(`site${d}`).toString('hex')}`, '');
    }
  }
  await run(cmd(bin('setfacl'), ['-R', '-m', 'u:1001:rwX,g:1002:rX', '--', dir]), { timeoutMs: 600_000 });
  const xattrFile = join(dir, '..', 'xattrs.txt');
  writeFileSync(xattrFile, xattrLines.join('\n') + '\n');
  await run(cmd(bin('setfattr'), [`--restore=${xattrFile}`], { cwd: '/' }), { timeoutMs: 600_000 });
  return { inodes: count, xattrs: xattrLines.length / 3 };
}

/** Ours: the sidecar as pre-backup writes it (in-process: Node start-up is not the point). */
export async function runOurSidecar(tree: string, out: string): Promise<Sample> {
  rmSync(out, { force: true });
  return timed(undefined, async () => {
    await writeAclSidecar([tree], out);
  });
}

/** Raw: what an admin would type, with the same options as ours. */
export async function runRawSidecar(tree: string, outPrefix: string): Promise<Sample> {
  const zstd = quote(bin('zstd'));
  const script = [
    'set -eu -o pipefail',
    `${quote(bin('getfacl'))} -R -p -n -s -P -- ${quote(tree)} | ${zstd} -q > ${quote(outPrefix + '.acl.zst')}`,
    `${quote(bin('getfattr'))} -R -P -h -d -m ${XATTR_MATCH} -e hex --absolute-names -- ${quote(tree)} | ${zstd} -q > ${quote(outPrefix + '.xattr.zst')}`,
  ].join('\n');
  return timed(undefined, async () => {
    await run(cmd(bin('bash'), ['-c', script]), { timeoutMs: 600_000 });
  });
}

/**
 * Ours: `restore acls` onto the tree itself (its paths are absolute, so the restore dir is /).
 * In-process, so the probe splits the CPU: Node's own (reading, sorting, rewriting the blocks)
 * and its children's (zstd, setfacl, setfattr: what the raw restore runs too).
 */
export async function runOurAclRestore(sidecar: string): Promise<Sample> {
  return timed(undefined, async () => {
    const self0 = process.cpuUsage();
    const children0 = childrenCpu();
    await restoreAcls('/', sidecar);
    const self = process.cpuUsage(self0);
    return { peakRssKb: process.resourceUsage().maxRSS, selfCpuS: (self.user + self.system) / 1e6, childCpuS: childrenCpu() - children0 };
  });
}

/** cutime + cstime of this process (the children it has reaped), in seconds. */
function childrenCpu(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[13]) + Number(fields[14])) / 100;
}

export async function runRawAclRestore(outPrefix: string): Promise<Sample> {
  const zstd = quote(bin('zstd'));
  const script = [
    'set -eu -o pipefail',
    'cd /',
    `${zstd} -q -dc -- ${quote(outPrefix + '.acl.zst')} | ${quote(bin('setfacl'))} --restore=-`,
    `${zstd} -q -dc -- ${quote(outPrefix + '.xattr.zst')} | ${quote(bin('setfattr'))} --restore=-`,
  ].join('\n');
  return timed(undefined, async () => {
    await run(cmd(bin('bash'), ['-c', script]), { timeoutMs: 600_000 });
  });
}
