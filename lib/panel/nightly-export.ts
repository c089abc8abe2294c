import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { ExportSetting } from './export-route.js';

/** The panel's anacron job: `/usr/bin/apnscp_php <APNSCP_HOME>/bin/scripts/backup_dbs.php`. */
export const PANEL_CRON_NAME = '10backup_dbs';

export interface NightlyExportCheck {
  readonly file: string;
  readonly present: boolean;
  readonly executable: boolean;
  /**
   * true: the setting reads off and run-parts will not run the job (gone, or not executable);
   * false: it will export tonight; undefined: the setting is off but the job is still in place
   * and executable, so only the panel's own script can skip the export (not confirmed by any source).
   */
  readonly stopped: boolean | undefined;
  readonly text: string;
}

/**
 * Did switching the exports off really stop them? The setting read back is one half; the other
 * is /etc/cron.daily/10backup_dbs, which run-parts runs when it is there and executable.
 */
export function checkNightlyExport(cronDir: string, setting: ExportSetting): NightlyExportCheck {
  const file = join(cronDir, PANEL_CRON_NAME);
  let present = false;
  let executable = false;
  try {
    const st = statSync(file);
    present = true;
    executable = st.isFile() && (st.mode & 0o111) !== 0;
  } catch {
    // absent (or unreadable to us, which run-parts as root would still see: we run as root too)
  }
  const how = setting.route === 'scope' ? 'the scope reads off' : 'manual_database_backups reads true';
  if (setting.enabled) {
    return { file, present, executable, stopped: false, text: `on: the panel exports every database nightly${present ? ` (${file})` : ''}` };
  }
  if (!present) return { file, present, executable, stopped: true, text: `stopped: ${how} and ${file} is gone` };
  if (!executable) return { file, present, executable, stopped: true, text: `stopped: ${how} and ${file} is not executable (run-parts skips it)` };
  if (setting.route === 'bootstrapper') {
    return { file, present, executable, stopped: false, text: `NOT stopped: ${how} but ${file} is still in place and executable (run \`upcp -sb apnscp/crons\`)` };
  }
  return { file, present, executable, stopped: undefined, text: `unconfirmed: ${how} but ${file} is still in place; it must skip the export itself` };
}
