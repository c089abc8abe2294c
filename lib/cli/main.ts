import { Command, Option } from 'commander';
import { ENGINE_NAMES } from '../config/schema.js';
import { allKinds } from '../kinds/index.js';
import { withContext, type CommandContext, type GlobalOptions } from './context.js';
import { packagePaths } from '../package-paths.js';

const LEVELS = ['Full', 'Incremental', 'Differential'];

type Handler = (ctx: CommandContext, opts: Record<string, unknown>, args: string[]) => Promise<number>;

/** Each command's module is loaded only when that command runs (start-up stays fast). */
function action(load: () => Promise<{ default: Handler }>, settings: { logFile?: boolean } = {}) {
  return async (...received: unknown[]): Promise<void> => {
    const command = received[received.length - 1] as Command;
    const opts = command.opts();
    const globals = command.optsWithGlobals<GlobalOptions>();
    const args = command.args;
    await withContext(globals, async (ctx) => (await load()).default(ctx, opts, args), settings);
  };
}

function version(): string {
  return packagePaths().version;
}

export function buildProgram(): Command {
  const program = new Command('apiscp-backup')
    .description('Consistent database dumps and backups for ApisCP servers')
    .version(version(), '-V, --version')
    .option('-c, --config <file>', 'configuration file (default /etc/apiscp-backup/config.yaml, or $APISCP_BACKUP_CONFIG)')
    .option('--root <dir>', 'put every system path (/etc, /var, /run, /home/virtual) under DIR')
    .option('--json', 'machine-readable output')
    .option('-v, --verbose', 'every event on the terminal, one line each (each database dumped: name, size, lock mode, time)')
    .option('-q, --quiet', 'no progress or info output even on a terminal')
    // One line and a hint, not the whole help after a typo; subcommands inherit these settings.
    .showHelpAfterError('(run with --help for usage)')
    .showSuggestionAfterError(true)
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

  const engine = (): Option => new Option('--engine <engine>', 'backup engine (default: config `engine`)').choices(ENGINE_NAMES);
  // Bacula's job facts (%l %n %i %c), passed to both hooks alike.
  const baculaJob = (c: Command): Command => c.addOption(new Option('--level <level>', 'the job\'s level (Bacula %l)').choices(LEVELS)).option('--job <name>', 'the job\'s name (Bacula %n)').option('--jobid <id>', 'the job\'s id (Bacula %i)').option('--client <name>', 'the job\'s client (Bacula %c)');
  // Which backup a site or file restore reads (restore db also takes a local run id).
  const fromBackup = (c: Command): Command => c.option('--from <backup|date>', 'backup id (list shows them) or a date: the newest at or before it').option('--from-client <name>', "another server's backup (migration)");

  const planned = (c: Command): Command =>
    c.option('--dry-run', 'print the plan (servers, databases per site with their lock mode and last size, free space, engine target) and change nothing').option('--stats', 'at the end, a table of every database dumped: size, lock mode, time');
  planned(program.command('dump').description('dump every database now, consistently')).action(action(() => import('./commands/dump.js')));

  planned(program.command('run').description('pre-backup, then the engine backup, then post-backup').addOption(engine())).action(action(() => import('./commands/run.js')));

  const hook = program.command('hook').description('entry points for Bacula RunScript and wrapper scripts');
  baculaJob(hook.command('pre-backup').description('lock, check the scope, dump, write the ACL sidecar; non-zero when dumps failed').addOption(engine()))
    .option('--timeout <duration>', 'overall limit (default hooks.timeout)')
    .action(action(() => import('./commands/hook-pre.js')));
  baculaJob(hook.command('post-backup').description('record the backup outcome, apply retention, release the dumps').addOption(engine()))
    .option('--status <status>', 'Bacula %e, or a wrapper\'s exit status (0 = ok)')
    .action(action(() => import('./commands/hook-post.js')));

  const scope = program.command('scope').description('the panel\'s nightly export scope (backups.automatic-database-exports)');
  const scopeVerbs = { status: 'show whether the panel\'s nightly exports are on, and the value recorded before we turned them off', disable: 'turn the panel\'s nightly exports off (recording the previous value)', restore: 'put the recorded value back (what uninstall does)' } as const;
  for (const verb of ['status', 'disable', 'restore'] as const) {
    scope.command(verb).description(scopeVerbs[verb]).action(action(async () => ({ default: (await import('./commands/scope.js'))[verb] })));
  }

  const config = program.command('config').description('configuration file');
  config
    .command('validate [file]')
    .description('check a configuration file and what a run will need: engine keys, secret files (root\'s, 0600), directories, tools; every problem at once')
    .option('--connect', 'also connect to each enabled database server and the engine\'s repository and say what was found')
    .action(action(async () => ({ default: (await import('./commands/config.js')).validate }), { logFile: false }));
  config.command('print').description('the effective configuration, secrets redacted').action(action(async () => ({ default: (await import('./commands/config.js')).print }), { logFile: false }));
  config
    .command('init [file]')
    .description('write a commented default configuration')
    .option('--force', 'overwrite an existing file')
    .action(action(async () => ({ default: (await import('./commands/config.js')).init }), { logFile: false }));

  program
    .command('status')
    .description('last run, age of the last good backup, scope, lock; non-zero when stale or failed')
    .action(action(() => import('./commands/status.js'), { logFile: false }));

  program
    .command('nightly')
    .description('what the cron.daily entry runs: `run`, or a watchdog for engines Bacula schedules')
    .action(action(() => import('./commands/nightly.js')));

  program
    .command('install')
    .description('install the cron.daily entry and a default config, disable the panel\'s own exports')
    .addOption(engine())
    .option('--node <path>', 'node binary the cron entry calls (default: this one)')
    .option('--dry-run', 'show what would change')
    .option('--tls-dir <dir>', 'bacula: add TLS and PKI data encryption to bacula-fd.conf from the files copied from the director host (with --client, --director)')
    .option('--client <name>', 'bacula --tls-dir: this file daemon\'s name (its certificate and keypair)')
    .option('--director <name>', 'bacula --tls-dir: the director\'s name (the only certificate the fd accepts)')
    .action(action(() => import('./commands/install.js')));
  program
    .command('uninstall')
    .description('remove the cron entry and restore the scope; --purge also removes config and dumps')
    .option('--purge', 'remove config, state and dumps too')
    .action(action(async () => ({ default: (await import('./commands/install.js')).uninstall })));

  program
    .command('repo-init')
    .description('create the restic or borg repository (once, before the first backup)')
    .addOption(engine())
    .option('--remote <url>', 'print what the backup host needs for an append-only remote (borg ssh://user@host/path, restic rest:https://host:port/path/)').option('--write <file>', 'with --remote: also write the authorized_keys line (borg) or the set-up (restic) to FILE')
    .action(action(() => import('./commands/repo-init.js')));
  program.command('prune').description('retention of append-only repositories, on the backup host (--print: its cron line)').addOption(engine()).option('--print', 'print the backup host\'s prune commands for this server').option('--repository <path>', 'the repository as the backup host sees it').option('--client <name>', 'whose backups (default: this host name)').action(action(() => import('./commands/prune.js')));

  program
    .command('verify')
    .description('prove dumps load: each into a throwaway server, compared with the server\'s inventory at dump time; exit 9 on a failure')
    .option('--run <id>', 'the run to verify (default: the newest complete run)')
    .option('--sample <n>', 'only N databases, those verified longest ago first')
    .option('--all', 'every database of the run (the default)')
    .action(action(() => import('./commands/verify.js')));

  program
    .command('list [run]')
    .description('local dump runs and the engine\'s backups of this server, with restore chains; with a run id: the databases of that run')
    .option('--run <id>', 'the databases of this run: site, kind, size, lock mode, verified or not, and the engine backup it went into')
    .addOption(engine())
    .option('--from-client <name>', 'another server\'s backups (restic host, borg prefix, Bacula client)')
    .action(action(() => import('./commands/list.js'), { logFile: false }));

  const restore = program.command('restore').description('get databases, sites and files back (docs/restore.md)');
  restore
    .command('db <name>')
    .description('restore one database from a local run or a backup; refuses to replace a non-empty one without --force')
    .addOption(engine())
    .addOption(new Option('--kind <kind>', 'when both servers have a database of that name').choices(allKinds.map((k) => k.name)))
    .option('--site <siteN>', 'the site that owns it (when names repeat)')
    .option('--from <run|backup|date>', 'local run id, backup id (list shows them) or a date: the newest at or before it')
    .option('--into <name>', 'restore into a new database beside the existing one (creates and changes no account)')
    .option('--grants', 'with --into: grant on the new name what the accounts hold on the original now (MariaDB)')
    .addOption(new Option('--accounts <mode>', 'keep: leave existing accounts and roles, report how they differ from the backup; backup: make those with privileges on the database the backup\'s (docs/restore-accounts.md)').choices(['keep', 'backup']).default('keep'))
    .option('--force', 'replace a non-empty database (a safety dump of it is taken first)')
    .option('--dry-run', 'say what would happen, change nothing')
    .option('--from-client <name>', 'another server\'s backup (migration)')
    .option('--host <host>', 'restore into the server at HOST instead of the configured one (PostgreSQL: a host name or socket directory)')
    .option('--port <port>', 'its TCP port (PostgreSQL: also selects the socket file)')
    .option('--socket <path>', 'restore into the server at this socket (MariaDB: the socket file; PostgreSQL: its directory)')
    .option('--at <time>', 'MariaDB: the database as it was at this moment (local time, to the second): the newest dump before it plus its binlog events up to it')
    .option('--before-event <file:pos>', 'MariaDB: as --at, up to just before the event at this binlog position (binlog events shows them)')
    .action(action(() => import('./commands/restore-db.js')));
  fromBackup(restore.command('site <siteN>').description('stage a site\'s shadow, info and databases from a backup and show what differs; --in-place puts it back').addOption(engine()))
    .option('--files', 'only the files (shadow, info)')
    .option('--databases', 'only the databases')
    .option('--in-place', 'put back every missing or changed file and replace the databases (safety dumps first)')
    .option('--exact', 'with --in-place: also remove what the backup does not have (listed first)')
    .option('--target <dir>', 'copy into DIR instead (a site the panel no longer has)')
    .addOption(new Option('--accounts <mode>', 'with --in-place, for its databases: keep (default) or backup, as restore db --accounts').choices(['keep', 'backup']))
    .option('--grants', 'refused: a site\'s databases keep their names (restore db --into NEW --grants copies grants)')
    .option('--dry-run', 'with --in-place: show, change nothing (for databases: the account plan and drift too)')
    .action(action(async () => ({ default: (await import('./commands/restore-site.js')).restoreSiteCommand })));
  fromBackup(restore.command('files <siteN> <paths...>').description('one file, directory or mailbox of a site (paths as the site sees them: /var/www/html/x)').addOption(engine()))
    .option('--target <dir>', 'copy into DIR')
    .option('--in-place', 'put them back into the site')
    .option('--dry-run', 'with --in-place: show, change nothing')
    .action(action(async () => ({ default: (await import('./commands/restore-site.js')).restoreFilesCommand })));
  restore
    .command('acls')
    .description('re-apply the ACL/xattr sidecar to a restored tree (duplicity loses them)')
    .requiredOption('--from <dir>', 'the restore directory')
    .option('--sidecar <file>', 'the sidecar file (default: found inside the restored dumps dir)')
    .action(action(() => import('./commands/restore-acls.js'), { logFile: false }));

  const binlog = program.command('binlog').description('MariaDB binary logs for point-in-time restores (docs/point-in-time.md)');
  binlog
    .command('follow')
    .description('copy the server\'s binlogs into <dumps.dir>/binlog as they are written; runs until stopped (the systemd unit runs it)')
    .option('--tick <seconds>', 'how often the state is written and closed files are summed (default 5)')
    .option('--server-id <n>', 'replication server id to announce (default 65042; unique per server and follower)')
    .action(action(() => import('./commands/binlog-follow.js')));
  binlog
    .command('events <database>')
    .description('one database\'s transactions in the kept binlogs: time, position, statement kinds, tables, rows (pick a moment for restore db --at / --before-event)')
    .option('--from <time>', 'from this moment (default: the oldest kept)')
    .option('--to <time>', 'up to this moment (default: the newest)')
    .action(action(() => import('./commands/binlog-events.js'), { logFile: false }));

  const bacula = program.command('bacula').description('Bacula integration');
  const baculaTls = bacula.command('tls').description('TLS and PKI data encryption for Bacula (docs/offsite.md)');
  baculaTls.command('fd').description('on a client: add TLS and PKI encryption to bacula-fd.conf').option('--fd-config <file>', 'default /etc/bacula/bacula-fd.conf').option('--dir <dir>', 'the files copied from the director host').option('--client <name>').option('--director <name>').option('--write').action(action(async () => ({ default: (await import('./commands/bacula-tls.js')).fd }), { logFile: false }));
  baculaTls.command('init').description('a CA, a certificate per daemon, PKI keypairs (existing files kept)').option('--dir <dir>', 'where tls/ and pki/ go').option('--daemon <name[@address]>', 'a daemon certificate (repeat)', (v: string, a: string[] = []) => [...a, v]).option('--pki <name>', 'a PKI keypair: a client\'s name, or master (repeat)', (v: string, a: string[] = []) => [...a, v]).action(action(() => import('./commands/bacula-tls.js'), { logFile: false }));
  bacula
    .command('config')
    .description('the director side: the ApisCP add-in template with our hooks, or a FileSet + Job fragment')
    .option('--client <name>', 'stock: the Client the Job backs up (default bacula.client)')
    .option('--fileset <name>', 'stock: the FileSet resource\'s name (default bacula.fileset)')
    .option('--job <name>', 'stock: the Job resource\'s name (default bacula.job)')
    .option('--jobdefs <name>', 'stock: the JobDefs the Job uses (default bacula.jobdefs; the ApisCP add-in\'s is "Incremental")')
    .option('--node <path>', 'node binary on the client (default: this one)')
    .option('--entry <path>', 'installed apiscp-backup script on the client')
    .addOption(new Option('--layout <layout>', 'director layout (default: detected in bacula.etc)').choices(['auto', 'addin', 'stock']))
    .option('--etc <dir>', "the director's configuration directory (default bacula.etc)")
    .option('--wrapper <path>', 'add-in: the command the RunScripts call on every client (default bacula.wrapper)')
    .option('--write', 'add-in: write local.d/servers/base.conf; stock: write an include file (both idempotent)')
    .option('--address <host>', 'also print the Client resource: where the director reaches this server\'s file daemon')
    .option('--fd-port <port>', 'the file daemon\'s port (default 9102)')
    .option('--password-file <file>', 'with --address: file holding the file daemon\'s Director password')
    .option('--tls-dir <dir>', 'require TLS in the Client resource with the director\'s certificate from `bacula tls init --dir DIR`').option('--tls-name <name>', 'the director\'s certificate name (default bacula-dir)')
    .action(action(() => import('./commands/bacula-config.js'), { logFile: false }));

  const fleet = program.command('fleet').description('on a Bacula director host: every client\'s backups, from the catalog');
  fleet
    .command('status')
    .description('per client: last good job, level, age, restore chain, last failure; exit 6 when any is stale or failed')
    .action(action(() => import('./commands/fleet-status.js'), { logFile: false }));

  program
    .command('paths')
    .description('list what the engine backs up (one path per line; Bacula runs this on the client)')
    .option('--exclude', 'list the excludes instead')
    .action(action(() => import('./commands/paths.js'), { logFile: false }));

  program
    .command('demo')
    .description('run the whole job on a built-in sandbox (throwaway servers, fake panel) and verify a restore')
    .addOption(engine())
    .option('--keep', 'keep the sandbox')
    .action(action(() => import('./commands/demo.js'), { logFile: false }));

  return program;
}

export async function main(argv: string[]): Promise<void> {
  await buildProgram().parseAsync(argv, { from: 'user' });
}
