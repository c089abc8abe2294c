import { describe, expect, test } from 'vitest';
import { parseResticRestoring, parseResticSnapshots } from '../../lib/engine/restic.js';

// restore site takes restic's newest snapshot with `restic restore latest` and learns which one
// from the line restic prints first. Each time read from that line must be the time
// `restic snapshots --json` gives for the same snapshot (parseResticSnapshots), since the
// journal and the report name it as `list` does; any line it cannot be sure of gives undefined
// (the caller then lists and fetches again by id).

/** What `snapshots --json` says of a snapshot, as restic 0.14 wrote it (RFC 3339, nanoseconds, its zone). */
const listed = (time: string): string => parseResticSnapshots(JSON.stringify([{ time, id: 'ec3469c1971ec4dd363d681a1ac502ee8bb5414d903323abb053cb4b5131eda9', short_id: 'ec3469c1' }]))[0]!.time;

describe('parseResticRestoring', () => {
  test('restic 0.14, as printed (UTC, nanoseconds)', () => {
    const out = 'restoring <Snapshot ec3469c1 of [/tmp/rtest/src] at 2026-12-08 01:42:46.467990963 +0000 UTC by root@vm> to /var/tmp/restore-x\n';
    expect(parseResticRestoring(out)).toEqual({ id: 'ec3469c1', time: listed('2026-12-08T01:42:46.467990963Z') });
  });

  test('a zone other than UTC, a fraction cut short, no fraction at all', () => {
    const cet = parseResticRestoring('restoring <Snapshot 0123abcd of [/a /b] at 2026-12-08 02:34:38.8 +0100 CET by root@host.example> to /s\n');
    expect(cet).toEqual({ id: '0123abcd', time: listed('2026-12-08T02:34:38.8+01:00') });
    expect(cet!.time).toBe('2026-12-08T01:34:38.800Z');
    const india = parseResticRestoring('restoring <Snapshot 0123abcd of [/a] at 2026-12-08 07:04:38.123456 +0530 IST by root@h> to /s');
    expect(india?.time).toBe(listed('2026-12-08T07:04:38.123456+05:30'));
    const whole = parseResticRestoring('restoring <Snapshot 0123abcd of [/a] at 2026-12-08 01:34:38 -0700 MST by root@h> to /s');
    expect(whole?.time).toBe(listed('2026-12-08T01:34:38-07:00'));
  });

  test('the later wording (restoring snapshot … by user@host to DIR)', () => {
    const out = 'repository 2f1e opened (version 2, compression level auto)\nrestoring snapshot 2edb5225 of [/home/virtual/site2 /var/lib/apiscp-backup/dumps] at 2026-12-08 01:34:38.8 +0000 UTC by root@vm to /s\nSummary: Restored 10 files/dirs (1 KiB) in 0:00\n';
    expect(parseResticRestoring(out)).toEqual({ id: '2edb5225', time: '2026-12-08T01:34:38.800Z' });
  });

  test('hostile paths in the list: the time is the last `] at TIME` of the line', () => {
    const path = '/home/virtual/site2/x] at 1999-01-01 00:00:00 +0000 UTC by evil@x> to /y [';
    const out = `restoring <Snapshot 0123abcd of [${path} /b] at 2026-12-08 01:00:00.5 +0000 UTC by root@vm> to /s\n`;
    expect(parseResticRestoring(out)).toEqual({ id: '0123abcd', time: '2026-12-08T01:00:00.500Z' });
  });

  test('nothing it cannot be sure of', () => {
    const good = 'restoring <Snapshot 0123abcd of [/a] at 2026-12-08 01:00:00 +0000 UTC by root@vm> to /s';
    for (const out of [
      '', // --quiet
      'Summary: Restored 10 files\n',
      // A line break in a path forges a second "restoring" line: two candidates, none trusted.
      `${good}\nrestoring <Snapshot deadbeef of [/x] at 2030-01-01 00:00:00 +0000 UTC by a@b> to /s\n`,
      ` ${good}`, // not at the start of a line
      good.replace('0123abcd', '0123ABCD'),
      good.replace('0123abcd', '0123abc'),
      good.replace('0123abcd', '0123abcde'),
      good.replace('2026-12-08 01:00:00', '2026-13-45 01:00:00'),
      good.replace('2026-12-08 01:00:00', '2026-12-08 25:61:00'),
      good.replace(' +0000', ''), // no zone: which instant is not known
      good.replace(' to /s', ''), // cut short
      good.replace('[/a]', '/a'),
      'restoring <Snapshot of [/a] at 2026-12-08 01:00:00 +0000 UTC> to /s', // restic 0.9's docs: no id
    ]) {
      expect(parseResticRestoring(out), JSON.stringify(out)).toBeUndefined();
    }
  });
});
