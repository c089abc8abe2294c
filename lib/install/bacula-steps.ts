import { addinPaths, detectBaculaLayout } from '../engine/bacula-addin.js';
import type { ResolvedPaths } from '../config/paths.js';

/**
 * What the admin does next for Bacula. Install runs on a client and never writes in /etc/bacula:
 * on the ApisCP add-in's director, bacula-dir.conf is a symlink to the RPM-owned
 * bacula-dir-apnscp.conf and conf.d/ belongs to the RPM too (an upgrade rewrites them); only
 * local.d/ is the admin's, and `bacula config --write` on the director writes there.
 */
export function baculaSteps(ctx: { cli: string; paths: ResolvedPaths; wrapper: string; baculaEtc: string }): string[] {
  const layout = detectBaculaLayout(ctx.baculaEtc);
  const addin = addinPaths(ctx.baculaEtc);
  const here = layout === 'addin' ? ' (this host has it)' : '';
  return [
    `ApisCP Bacula add-in director${here}: on the director run \`apiscp-backup bacula config --write\`; it writes ${addin.localTemplate} from the installed template with our RunScript pair in its Job, so every server's <name>-Backup job calls ${ctx.wrapper} on its client (RPM-owned files are never touched); then \`bacula-dir -t -c /etc/bacula/bacula-dir.conf\` and \`systemctl reload bacula-dir\``,
    `remove the add-in's documented RunScript calling backup_dbs.php --force from ${addin.localTemplate} if you added it: our hook exports the databases, that one would export every database a second time`,
    `stock director (Debian/RHEL bacula-dir.conf): \`apiscp-backup bacula config --write\` writes an include file; add the @-line it prints to bacula-dir.conf, then \`bacula-dir -t\` and reload`,
    `every client needs this install (it put ${ctx.wrapper} in place); the add-in's FileSet Client-Layer already backs up /var/backup, where the dumps are (${ctx.paths.dumpsDir})`,
    'the cron entry only watches: Bacula schedules the job and our pre-backup hook dumps the databases',
    `over a WAN (docs/offsite.md): on the director \`apiscp-backup bacula tls init --dir DIR --daemon <each daemon>[@address] --pki <this client> --pki master\` and \`bacula config --tls-dir DIR\`; copy this client's certificate, key, PKI keypair and master.cert (never master.pem) here (0600 root), then \`apiscp-backup install --engine bacula --tls-dir <copy> --client <name> --director <name>\` writes bacula-fd.conf's TLS and PKI`,
  ];
}
