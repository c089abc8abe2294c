import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cmd } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';

/** Config texts and the catalog for the Bacula harness (./bacula.ts): pure text; loopback unless given a test-network address. */

const LOOPBACK = '127.0.0.1';

/**
 * An empty sqlite catalog named `<dbname>.db` in `workDir`. The Debian package ships one
 * (/var/lib/bacula/bacula.db); without it we run the package's make_sqlite3_tables, whose
 * `cd /var/lib/bacula` and XXX_DBNAME_XXX placeholder we point at our own directory.
 */
export async function prepareCatalog(workDir: string, dbname = 'bacula', shipped: string | null = '/var/lib/bacula/bacula.db'): Promise<string> {
  const target = join(workDir, `${dbname}.db`);
  if (shipped && existsSync(shipped)) {
    copyFileSync(shipped, target);
    return target;
  }
  const script = '/usr/share/bacula-director/make_sqlite3_tables';
  const text = readFileSync(script, 'utf8')
    .replace(/^cd \/var\/lib\/bacula$/m, `cd '${workDir}'`)
    .replace(/XXX_DBNAME_XXX/g, dbname);
  const patched = join(workDir, 'make_sqlite3_tables');
  writeFileSync(patched, text, { mode: 0o700 });
  await run(cmd('/bin/sh', [patched]), { timeoutMs: 60_000 });
  return target;
}

export interface StockParams {
  directorName: string;
  dirPort: number;
  consolePassword: string;
  workDir: string;
  clientName: string;
  fdPort: number;
  fdPassword: string;
  sdPort: number;
  sdPassword: string;
  logFile: string;
  /** What FileSet "Full Set" backs up (Debian's says /usr/sbin: too slow for tests). */
  dataDir: string;
  /** Where the director, its storage daemon and its own client listen (default 127.0.0.1; a namespace address in fleet tests). */
  address?: string;
}

/**
 * Shaped like Debian's /etc/bacula/bacula-dir.conf (same resource names: JobDefs DefaultJob,
 * FileSet "Full Set", Storage File1, Pools Default/File/Scratch, Catalog MyCatalog, Messages
 * Standard/Daemon, Job RestoreFiles) so that appending a fragment is what an admin does.
 * Differences: loopback + our ports/passwords, paths in the temp dir, no mail (no MTA here).
 */
export function stockDirectorConfig(p: StockParams): string {
  const q = JSON.stringify;
  const address = p.address ?? LOOPBACK;
  return `Director {
  Name = ${p.directorName}
  DIRport = ${p.dirPort}
  DirAddress = ${address}
  QueryFile = ${q(join(p.workDir, 'query.sql'))}
  WorkingDirectory = ${q(p.workDir)}
  PidDirectory = ${q(p.workDir)}
  Maximum Concurrent Jobs = 20
  Password = ${q(p.consolePassword)}
  Messages = Daemon
}
JobDefs {
  Name = "DefaultJob"
  Type = Backup
  Level = Incremental
  Client = ${p.clientName}
  FileSet = "Full Set"
  Schedule = "WeeklyCycle"
  Storage = File1
  Messages = Standard
  Pool = File
  SpoolAttributes = yes
  Priority = 10
  Write Bootstrap = ${q(join(p.workDir, '%c.bsr'))}
}
Job {
  Name = "BackupClient1"
  JobDefs = "DefaultJob"
}
Job {
  Name = "RestoreFiles"
  Type = Restore
  Client = ${p.clientName}
  Storage = File1
  FileSet = "Full Set"
  Pool = File
  Messages = Standard
  Where = ${q(join(p.workDir, 'bacula-restores'))}
}
FileSet {
  Name = "Full Set"
  Include {
    Options {
      signature = MD5
    }
    File = ${q(p.dataDir)}
  }
  Exclude {
    File = ${q(p.workDir)}
    File = /proc
    File = /sys
  }
}
Schedule {
  Name = "WeeklyCycle"
  Run = Full 1st sun at 23:05
  Run = Differential 2nd-5th sun at 23:05
  Run = Incremental mon-sat at 23:05
}
Client {
  Name = ${p.clientName}
  Address = ${address}
  FDPort = ${p.fdPort}
  Catalog = MyCatalog
  Password = ${q(p.fdPassword)}
  File Retention = 60 days
  Job Retention = 6 months
  AutoPrune = yes
}
Storage {
  Name = File1
  Address = ${address}
  SDPort = ${p.sdPort}
  Password = ${q(p.sdPassword)}
  Device = FileStorage
  Media Type = File1
  Maximum Concurrent Jobs = 10
}
Catalog {
  Name = MyCatalog
  dbname = "bacula"; dbuser = ""; dbpassword = ""
}
Messages {
  Name = Standard
  console = all, !skipped, !saved
  append = ${q(p.logFile)} = all, !skipped
  catalog = all
}
Messages {
  Name = Daemon
  console = all, !skipped, !saved
  append = ${q(p.logFile)} = all, !skipped
}
Pool {
  Name = Default
  Pool Type = Backup
  Recycle = yes
  AutoPrune = yes
  Volume Retention = 365 days
  Maximum Volume Bytes = 50G
  Maximum Volumes = 100
}
Pool {
  Name = File
  Pool Type = Backup
  Recycle = yes
  AutoPrune = yes
  Volume Retention = 365 days
  Maximum Volume Bytes = 50G
  Maximum Volumes = 100
  Label Format = "Vol-"
}
Pool {
  Name = Scratch
  Pool Type = Backup
}
`;
}

/** The storage daemon: File devices writing volumes into `volumes` (default one, FileStorage). */
export function sdConfig(dirName: string, port: number, pw: string, workDir: string, volumes: string, devices = { names: ['FileStorage'], mediaType: 'File1' }, address = LOOPBACK): string {
  const device = (name: string): string => `Device {
  Name = ${name}
  Media Type = ${devices.mediaType}
  Archive Device = ${JSON.stringify(volumes)}
  LabelMedia = yes
  Random Access = yes
  AutomaticMount = yes
  RemovableMedia = no
  AlwaysOpen = no
  Maximum Concurrent Jobs = 5
}
`;
  return `Storage {
  Name = harness-sd
  SDPort = ${port}
  SDAddress = ${address}
  WorkingDirectory = ${JSON.stringify(workDir)}
  Pid Directory = ${JSON.stringify(workDir)}
  Maximum Concurrent Jobs = 20
}
Director {
  Name = ${dirName}
  Password = ${JSON.stringify(pw)}
}
${devices.names.map(device).join('')}Messages {
  Name = Standard
  director = ${dirName} = all
}
`;
}

/** The file daemon (the ApisCP server's side): runs our RunScripts and the FileSet programs. */
export function fdConfig(dirName: string, clientName: string, port: number, pw: string, workDir: string, address = LOOPBACK): string {
  return `Director {
  Name = ${dirName}
  Password = ${JSON.stringify(pw)}
}
FileDaemon {
  Name = ${clientName}
  FDport = ${port}
  FDAddress = ${address}
  WorkingDirectory = ${JSON.stringify(workDir)}
  Pid Directory = ${JSON.stringify(workDir)}
  Maximum Concurrent Jobs = 20
  Plugin Directory = /usr/lib/bacula
}
Messages {
  Name = Standard
  director = ${dirName} = all, !skipped, !restored
}
`;
}

/** bconsole talks to our director only. */
export function bconsoleConfig(dirName: string, port: number, pw: string, address = LOOPBACK): string {
  return `Director {\n  Name = ${dirName}\n  DIRport = ${port}\n  address = ${address}\n  Password = ${JSON.stringify(pw)}\n}\n`;
}
