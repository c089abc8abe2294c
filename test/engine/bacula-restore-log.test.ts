import { describe, expect, test } from 'vitest';
import { attributesNotRestored } from '../../lib/engine/bacula-restore.js';

// `list joblog` lines as bconsole 9.6.7 prints them (a table: "| time | text |"), with a staging
// directory and file names a tenant chose.
const STAGING = '/var/lib/apiscp-backup/restore/restore-Ab12';
const row = (text: string): string => `| 2026-12-07 19:26:40 | apiscp-fd JobId 2: ${text} |`;

describe('attributesNotRestored: the ACLs and xattrs a Bacula restore could not set', () => {
  test('acl_from_text and acl_set_file errors name the file as it was backed up', () => {
    const log = [
      '+---------------------+------+',
      row(`Warning: bacl_linux.c:265 acl_from_text error on file "${STAGING}/home/virtual/site3/shadow/var/www/html/name with space.txt": ERR=Invalid argument`),
      row(`Warning: bacl_linux.c:290 acl_set_file error on file "${STAGING}/home/virtual/site1/a": ERR=Operation not supported`),
      row('Warning: Encountered 2 acl errors while doing restore'),
      row('Restore OK'),
    ].join('\n');
    expect(attributesNotRestored(log, STAGING)).toEqual([
      'acl_from_text error on file "/home/virtual/site3/shadow/var/www/html/name with space.txt": ERR=Invalid argument',
      'acl_set_file error on file "/home/virtual/site1/a": ERR=Operation not supported',
      'Encountered 2 acl errors while doing restore',
    ]);
  });

  test('xattr errors and the incompatible-stream message count too', () => {
    const log = [
      row(`Warning: bxattr_linux.c:310 lsetxattr error on file "${STAGING}/x": ERR=Operation not permitted`),
      row(`Warning: Can't restore ACLs of ${STAGING}/y - incompatible acl stream encountered - 1000`),
    ].join('\n');
    expect(attributesNotRestored(log, STAGING)).toEqual(['lsetxattr error on file "/x": ERR=Operation not permitted', "Can't restore ACLs of /y - incompatible acl stream encountered - 1000"]);
  });

  test('a tenant file name that says "acl error" is not one; a clean log gives nothing', () => {
    const log = [
      row(`Warning: restore.c:120 Cannot set times on "${STAGING}/home/virtual/site1/acl error xattr.txt": ERR=No such file`),
      row('Start Restore Job RestoreFiles.2026-12-07_19.26.38_05'),
      row('Restore OK'),
      'You have messages. acl error',
    ].join('\n');
    expect(attributesNotRestored(log, STAGING)).toEqual([]);
  });
});
