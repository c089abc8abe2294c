/**
 * mariadb-dump failures a new attempt can cure: a table changed under the dump. The dump lists
 * the tables first and reads them one by one; a TRUNCATE or a rebuilding ALTER of a table not yet
 * read makes its SELECT fail inside the snapshot (1412), a RENAME or DROP leaves a name that no
 * longer exists (1146, or "Couldn't read status information" when SHOW TABLE STATUS finds
 * nothing). A new mariadb-dump lists the tables again under a new snapshot.
 */
const CHANGED: readonly { readonly re: RegExp; readonly why: string }[] = [
  { re: /Table definition has changed, please retry transaction|Error 1412:|\(1412\)/, why: 'its definition changed under the dump (1412: TRUNCATE or a rebuilding ALTER)' },
  { re: /Couldn't read status information for table/, why: 'it vanished during the dump (RENAME or DROP)' },
  { re: /doesn't exist(?: \(1146\)|" when using LOCK TABLES)/, why: 'it vanished during the dump (1146: RENAME or DROP)' },
  { re: /: 1146: /, why: 'it vanished during the dump (1146: RENAME or DROP)' },
];

/** The table a mariadb-dump error line names, as the tool wrote it. */
function tableOf(line: string): string | undefined {
  return (
    /FROM (`(?:[^`]|``)+`)'/.exec(line)?.[1] ??
    /when dumping table (`(?:[^`]|``)+`)/.exec(line)?.[1] ??
    /status information for table (\S+)/.exec(line)?.[1] ??
    /Table '([^']+)' doesn't exist/.exec(line)?.[1]
  );
}

export function explainMysqlFailure(stderr: string): { readonly message?: string; readonly retry?: string } | undefined {
  const lines = stderr.split('\n');
  for (const { re, why } of CHANGED) {
    const line = lines.find((l) => re.test(l));
    if (line === undefined) continue;
    const table = tableOf(line);
    return { retry: `${table ? `table ${table}` : 'a table'}: ${why}` };
  }
  return undefined;
}
