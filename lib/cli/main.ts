import { Command, Option } from 'commander';
import { ENGINE_NAMES } from '../config/schema.js';
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
    .option('-v, --verbose', 'log everything to the terminal')
    .option('-q, --quiet', 'no progress or info output even on a terminal')
    .showHelpAfterError()
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

  const engine = (): Option => new Option('--engine <engine>', 'backup engine (default: config `engine`)').choices(ENGINE_NAMES);
  // Bacula's job facts (%l %n %i %c), passed to both hooks alike.
  const baculaJob = (c: Command): Command => c.addOption(new Option('--level <level>', 'Bacula %l').choices(LEVELS)).option('--job <name>', 'Bacula %n').option('--jobid <id>', 'Bacula %i').option('--client <name>', 'Bacula %c');
  // Which backup a site or file restore reads (restore db also takes a local run id).
  const fromBackup = (c: Command): Command => c.option('--from <backup|date>', 'backup id (list shows them) or a date: the newest at or before it').option('--from-client <name>', "another server's backup (migration)");

  program.command('dump').description('dump every database now, consistently').action(action(() => import('./commands/dump.js')));

  program.command('run').description('pre-backup, then the engine backup, then post-backup').addOption(engine()).action(action(() => import('./commands/run.js')));

  const hook = program.command('hook').description('entry points for Bacula RunScript and wrapper scripts');
  baculaJob(hook.command('pre-backup').description('lock, check the scope, dump, write the ACL sidecar; non-zero when dumps failed').addOption(engine()))
    .option('--timeout <duration>', 'overall limit (default hooks.timeout)')
    .action(action(() => import('./commands/hook-pre.js')));
  baculaJob(hook.command('post-backup').description('record the backup outcome, apply retention, release the dumps').addOption(engine()))
    .option('--status <status>', 'Bacula %e, or a wrapper\'s exit status (0 = ok)')
    .action(action(() => import('./commands/hook-post.js')));

  const scope = program.command('scope').description('the panel\'s nightly export scope (backups.automatic-database-exports)');
  for (const verb of ['status', 'disable', 'restore'] as const) {
    scope.command(verb).description(`${verb} the nightly export scope`).action(action(async () => ({ default: (await import('./commands/scope.js'))[verb] })));
  }

  const config = program.command('config').description('configuration file');
  config.command('validate [file]').description('check a configuration file').action(action(async () => ({ default: (await import('./commands/config.js')).validate }), { logFile: false }));
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
    .action(action(() => import('./commands/repo-init.js')));

  program
    .command('verify')
    .description('prove dumps load: each into a throwaway server, compared with the server\'s inventory at dump time; exit 9 on a failure')
    .option('--run <id>', 'the run to verify (default: the newest complete run)')
    .option('--sample <n>', 'only N databases, those verified longest ago first')
    .option('--all', 'every database of the run (the default)')
    .action(action(() => import('./commands/verify.js')));

  program
    .command('list')
    .description('local dump runs and the engine\'s backups of this server, with restore chains')
    .addOption(engine())
    .option('--from-client <name>', 'another server\'s backups (restic host, borg prefix, Bacula client)')
    .action(action(() => import('./commands/list.js'), { logFile: false }));

  const restore = program.command('restore').description('get databases, sites and files back (docs/restore.md)');
  restore
    .command('db <name>')
    .description('restore one database from a local run or a backup; refuses to replace a non-empty one without --force')
    .addOption(engine())
    .addOption(new Option('--kind <kind>', 'when both servers have a database of that name').choices(['mysql', 'postgresql']))
    .option('--site <siteN>', 'the site that owns it (when names repeat)')
    .option('--from <run|backup|date>', 'local run id, backup id (list shows them) or a date: the newest at or before it')
    .option('--into <name>', 'restore into a new database beside the existing one (creates and changes no account)')
    .option('--grants', 'with --into: grant on the new name what the accounts hold on the original now (MariaDB)')
    .addOption(new Option('--accounts <mode>', 'keep: leave existing accounts and roles, report how they differ from the backup; backup: make those with privileges on the database the backup\'s (docs/restore-accounts.md)').choices(['keep', 'backup']).default('keep'))
    .option('--force', 'replace a non-empty database (a safety dump of it is taken first)')
    .option('--dry-run', 'say what would happen, change nothing')
    .option('--from-client <name>', 'another server\'s backup (migration)')
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
  bacula
    .command('config')
    .description('the director side: the ApisCP add-in template with our hooks, or a FileSet + Job fragment')
    .option('--client <name>')
    .option('--fileset <name>')
    .option('--job <name>')
    .option('--jobdefs <name>')
    .option('--node <path>', 'node binary on the client (default: this one)')
    .option('--entry <path>', 'installed apiscp-backup script on the client')
    .addOption(new Option('--layout <layout>', 'director layout (default: detected in bacula.etc)').choices(['auto', 'addin', 'stock']))
    .option('--etc <dir>', "the director's configuration directory (default bacula.etc)")
    .option('--wrapper <path>', 'add-in: the command the RunScripts call on every client (default bacula.wrapper)')
    .option('--write', 'add-in: write local.d/servers/base.conf; stock: write an include file (both idempotent)')
    .option('--address <host>', 'also print the Client resource: where the director reaches this server\'s file daemon')
    .option('--fd-port <port>', 'the file daemon\'s port (default 9102)')
    .option('--password-file <file>', 'with --address: file holding the file daemon\'s Director password')
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
