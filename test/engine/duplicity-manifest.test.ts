import { describe, expect, test } from 'vitest';
import { chainManifests, compareIndex, mergeFetchRuns, parseDuplicityManifest, toIndex, volumesTouching, type VolumeRange } from '../../lib/engine/duplicity-manifest.js';

// duplicity 0.8.22's manifests as its manifest.py writes them (the archive dir's copy: volumes as
// the backup goes, the Filelist at the end), then every way one can be odd: each must parse to
// exactly what duplicity would read, or be refused (the fetch then runs one path per run).

const vol = (n: number, start: string, end: string, extra = ''): string =>
  `Volume ${n}:\n    StartingPath   ${start}\n    EndingPath     ${end}\n    Hash SHA1 c427f55b48ea16a257cff639890f1009fa0b0ad7\n${extra}`;
const filelist = (...paths: string[]): string => `Filelist ${paths.length}\n${paths.map((p) => `    new      ${p}\n`).join('')}`;
const manifest = (body: string): Buffer => Buffer.from(`Hostname vm\nLocaldir /\n${body}`, 'latin1');
const parse = (text: string | Buffer) => parseDuplicityManifest(typeof text === 'string' ? Buffer.from(text, 'latin1') : text);
const volumes = (text: string | Buffer): readonly VolumeRange[] => {
  const r = parse(text);
  if (!r.ok) throw new Error(`line ${r.line}: ${r.reason}`);
  return r.volumes;
};

// The bench's layout: site2 (300 MB) fills volume 1 and starts volume 2, which holds the rest (dumps.dir among it).
const H = 'home/virtual';
const D = 'var/backup/apiscp-backup';
const RUN = `${D}/20261208T013759Z`;
const BENCH = manifest(
  vol(1, '. ', `${H}/site2/shadow/var/www/html/wp/uploads/backup-2.zip 303`) +
    vol(2, `${H}/site2/shadow/var/www/html/wp/uploads/backup-2.zip 304`, 'var/log/mailer_table-20261120.gz  ') +
    filelist(`${H}/site2/info`, `${H}/site2/shadow/var/www/html/index.html`, `${RUN}/manifest.json`, `${D}/fs-acls.zst`),
);
const abs = (p: string): string => `/${p}`;
const SITE_PATHS = [`${H}/site2/shadow`, `${H}/site2/info`, `${D}/fs-acls.zst`, `${D}/latest`, `${RUN}/manifest.json`, `${RUN}/site2`, `${RUN}/_server/mysql-users.sql.zst`, `${RUN}/_server/postgresql-globals.sql.zst`].map(abs);
const ROOTS = [abs(D), abs(`${H}/site2`)];

describe('parseDuplicityManifest', () => {
  test('the archive dir copy: volumes with block numbers, trailing blanks, then the Filelist', () => {
    expect(volumes(BENCH)).toEqual([
      { volume: 1, start: [], end: `${H}/site2/shadow/var/www/html/wp/uploads/backup-2.zip`.split('/') },
      { volume: 2, start: `${H}/site2/shadow/var/www/html/wp/uploads/backup-2.zip`.split('/'), end: ['var', 'log', 'mailer_table-20261120.gz'] },
    ]);
  });

  test("to_string's order (Filelist first), no Hostname/Localdir", () => {
    expect(volumes(filelist('a') + vol(1, '.', 'a/b') + vol(2, 'a/c', 'z')).map((v) => v.end)).toEqual([['a', 'b'], ['z']]);
  });

  test('quoted names: \\x0a, \\x20, \\x22, \\x5c and bytes that are not UTF-8 come back as bytes', () => {
    const v = volumes(manifest(vol(1, '"home/new\\x0aline/a\\x20b"', '"home/q\\x22\\x27\\x5c/\xff\xfe"') + filelist('"home/new\\x0aline/a\\x20b"')));
    expect(v[0]!.start).toEqual(['home', 'new\nline', 'a b']);
    expect(v[0]!.end).toEqual(['home', `q"'\\`, '\xff\xfe']);
    expect(Buffer.from(v[0]!.end[1]!, 'latin1')).toEqual(Buffer.from([0x71, 0x22, 0x27, 0x5c]));
  });

  test('"Volume" inside file names (quoted, in paths and in the Filelist) is no volume', () => {
    const v = volumes(manifest(vol(1, '.', '"x/Volume\\x202:"') + vol(2, '"x/Volume\\x202:"', 'y') + filelist('"Volume\\x203:"', 'Volume', '"x/Volume\\x0aVolume\\x204:"')));
    expect(v.map((x) => x.volume)).toEqual([1, 2]);
    expect(v[0]!.end).toEqual(['x', 'Volume 2:']);
  });

  test('a UTF-8 name is compared as its bytes, not as UTF-16 (U+FF5A < U+1F600 as bytes, > as JS strings)', () => {
    const v = volumes(manifest(vol(1, '.', Buffer.from('home/ü/ｚ', 'utf8').toString('latin1')) + vol(2, Buffer.from('home/ü/😀', 'utf8').toString('latin1'), 'z') + filelist()));
    expect(v[0]!.end).toEqual(toIndex('/home/ü/ｚ'));
    expect('😀' < 'ｚ').toBe(true);
    expect(volumesTouching(v, toIndex('/home/ü/😀'))).toEqual(new Set([2]));
    expect(volumesTouching(v, toIndex('/home/ü/ｚ'))).toEqual(new Set([1]));
    expect(volumesTouching(v, toIndex('/home/ü'))).toEqual(new Set([1, 2]));
  });

  test('a full backup of many files: the Filelist is read line by line to its count', () => {
    const many = Array.from({ length: 300_000 }, (_, k) => `home/virtual/site2/shadow/f${k}`);
    expect(volumes(manifest(vol(1, '.', 'home/virtual/site2/shadow/f5') + vol(2, 'home/virtual/site2/shadow/f5 1', 'z') + `Filelist ${many.length}\n${many.map((p) => `    new      ${p}\n`).join('')}`)).map((v) => v.volume)).toEqual([1, 2]);
  });

  const refused: [string, string | Buffer][] = [
    ['CRLF line ends', BENCH.toString('latin1').replace(/\n/g, '\r\n')],
    ['a NUL byte', manifest(vol(1, '.', 'a\0b') + filelist())],
    ['cut inside a line', BENCH.subarray(0, BENCH.length - 10)],
    ['cut at a line end inside the Filelist', BENCH.toString('latin1').split('\n').slice(0, -3).join('\n') + '\n'],
    ['cut after a volume (no Filelist)', manifest(vol(1, '.', 'a'))],
    ['cut inside a volume (no EndingPath)', manifest(filelist() + 'Volume 1:\n    StartingPath   .\n')],
    ['missing EndingPath', manifest(`Volume 1:\n    StartingPath   .\n    Hash SHA1 00\n${filelist()}`)],
    ['missing StartingPath', manifest(`Volume 1:\n    EndingPath   a\n${filelist()}`)],
    ['two EndingPaths', manifest(vol(1, '.', 'a', '    EndingPath     b\n') + filelist())],
    ['a block number that is no number', manifest(vol(1, '.', 'a 12x') + filelist())],
    ['a fourth field', manifest(vol(1, '.', 'a 12 13') + filelist())],
    ['volumes 1, 3', manifest(vol(1, '.', 'a') + vol(3, 'b', 'c') + filelist())],
    ['volume 2 again (a restarted backup)', manifest(vol(1, '.', 'a') + vol(2, 'b', 'c') + vol(2, 'b', 'd') + filelist())],
    ['volumes out of order', manifest(vol(1, '.', 'b') + vol(2, 'a', 'c') + filelist())],
    ['a volume ending before it starts', manifest(vol(1, 'b', 'a') + filelist())],
    ['an unknown field', manifest(vol(1, '.', 'a', '    Size 1234\n') + filelist())],
    ['an unquoted backslash', manifest(vol(1, '.', 'a\\x20b') + filelist())],
    ["an unquoted '", manifest(vol(1, '.', "a'b") + filelist())],
    ['an escape that is not \\xHH', manifest(vol(1, '.', '"a\\yb"') + filelist())],
    ['a short \\x escape', manifest(vol(1, '.', '"a\\x2"') + filelist())],
    ['a quote without its end', manifest(vol(1, '.', '"a\\x20b') + filelist())],
    ['an empty path component', manifest(vol(1, '.', 'a//b') + filelist())],
    ['no volume at all', manifest(filelist('a'))],
    ['two Filelists', manifest(filelist() + vol(1, '.', 'a') + filelist())],
    ['Filelist count larger than its lines', manifest(vol(1, '.', 'a') + 'Filelist 3\n    new a\n')],
    ['an unindented line among the volumes', manifest(vol(1, '.', 'a') + 'EndingPath b\n' + filelist())],
    ['an empty file', ''],
    ['gpg-encrypted bytes', Buffer.from([0x85, 0x01, 0x0c, 0x03, 0x0a, 0x00])],
  ];
  test.each(refused)('refused: %s', (_name, text) => {
    const r = parse(text);
    expect(r.ok).toBe(false);
  });
});

describe('duplicity path order', () => {
  test('component-wise, as tuples of bytes: "a/b" < "a-c" although "a/b" > "a-c" as strings', () => {
    expect('a/b' > 'a-c').toBe(true);
    expect(compareIndex(['a', 'b'], ['a-c'])).toBeLessThan(0);
    expect(compareIndex(['a'], ['a', 'b'])).toBeLessThan(0);
    expect(compareIndex([], ['a'])).toBeLessThan(0);
    expect(compareIndex(['a', 'b'], ['a', 'b'])).toBe(0);
  });

  test('volumesTouching: a volume may hold a path when its start (cut to the path length) <= path <= its end', () => {
    // Volume 1 ends inside a/, volume 2 starts inside a/ and holds a-c: a/ (component-wise) sorts before a-c.
    const v = volumes(manifest(vol(1, '.', 'a/b 4') + vol(2, 'a/b 5', 'a-c/z') + vol(3, 'a-d', 'b') + filelist()));
    expect(volumesTouching(v, ['a'])).toEqual(new Set([1, 2]));
    expect(volumesTouching(v, ['a', 'b'])).toEqual(new Set([1, 2]));
    expect(volumesTouching(v, ['a', 'a'])).toEqual(new Set([1]));
    expect(volumesTouching(v, ['a-c'])).toEqual(new Set([2]));
    expect(volumesTouching(v, ['a-d', 'x'])).toEqual(new Set([3]));
    expect(volumesTouching(v, [])).toEqual(new Set([1, 2, 3]));
    expect(volumesTouching(v, ['c'])).toEqual(new Set());
  });
});

describe('chainManifests', () => {
  const names = [
    'duplicity-full.20261201T010000Z.manifest',
    'duplicity-full-signatures.20261201T010000Z.sigtar.gz',
    'duplicity-inc.20261201T010000Z.to.20261202T010000Z.manifest',
    'duplicity-inc.20261202T010000Z.to.20261203T010000Z.manifest',
    'duplicity-full.20261204T010000Z.manifest',
    'duplicity-inc.20261204T010000Z.to.20261205T010000Z.manifest',
    'duplicity-inc.20261205T010000Z.to.20261206T010000Z.manifest.part',
    'lockfile',
  ];
  const at = (iso: string): number => Date.parse(iso) / 1000;
  test('the newest full at or before the time, and its incrementals up to the time', () => {
    expect(chainManifests(names, at('2026-12-02T01:00:00Z'))).toEqual([names[0], names[2]]);
    expect(chainManifests(names, at('2026-12-03T12:00:00Z'))).toEqual([names[0], names[2], names[3]]);
    expect(chainManifests(names, at('2026-12-04T01:00:00Z'))).toEqual([names[4]]);
    expect(chainManifests(names, at('2026-12-09T00:00:00Z'))).toEqual([names[4], names[5]]);
  });
  test('no full that old (or none at all): undefined', () => {
    expect(chainManifests(names, at('2026-11-30T00:00:00Z'))).toBeUndefined();
    expect(chainManifests(['duplicity-full.20261201T010000Z.manifest.gpg'], at('2026-12-09T00:00:00Z'))).toBeUndefined();
  });
});

describe('mergeFetchRuns', () => {
  const runs = (sets: string[], paths = SITE_PATHS, roots = ROOTS, usable?: (d: string) => boolean) =>
    mergeFetchRuns({ paths, sets: sets.map((s) => volumes(manifest(s + filelist()))), roots, ...(usable ? { usable } : {}) }).map((r) => ({ path: r.path, covers: r.covers }));

  test('the bench layout: two runs, the site directory and dumps.dir', () => {
    expect(runs([BENCH.toString('latin1').replace(/^Hostname vm\nLocaldir \/\n/, '').replace(/Filelist[\s\S]*$/, '')])).toEqual([
      { path: abs(`${H}/site2`), covers: SITE_PATHS.slice(0, 2) },
      { path: abs(D), covers: SITE_PATHS.slice(2) },
    ]);
  });

  test('dumps.dir over several volumes, another site\'s dumps in one the request does not need: the run directory at most', () => {
    const sets = [vol(1, '.', `${H}/site2/shadow/z`) + vol(2, `${H}/site2/shadow/z 1`, `${RUN}/site1/db.sql.zst 3`) + vol(3, `${RUN}/site1/db.sql.zst 4`, `${RUN}/site1/db.sql.zst 9`) + vol(4, `${RUN}/site1/db.sql.zst 10`, 'var/log/x')];
    // fs-acls.zst and latest sort after the run (digits < letters) in volume 4; dumps.dir touches 2, 3, 4, the run 2, 3, 4,
    // the requested paths of the run 2 (manifest.json) and 4 (site2, _server): only _server's two files go together.
    expect(runs(sets)).toEqual([
      { path: abs(`${H}/site2`), covers: SITE_PATHS.slice(0, 2) },
      { path: abs(`${D}/fs-acls.zst`), covers: [abs(`${D}/fs-acls.zst`)] },
      { path: abs(`${D}/latest`), covers: [abs(`${D}/latest`)] },
      { path: abs(`${RUN}/manifest.json`), covers: [abs(`${RUN}/manifest.json`)] },
      { path: abs(`${RUN}/site2`), covers: [abs(`${RUN}/site2`)] },
      { path: abs(`${RUN}/_server`), covers: SITE_PATHS.slice(6) },
    ]);
  });

  test('an incremental in the chain where the directory touches one more volume: no merge there', () => {
    const full = vol(1, '.', 'z');
    const inc = vol(1, '.', `${D}/20261207T000000Z/site9/a.sql.zst 5`) + vol(2, `${D}/20261207T000000Z/site9/a.sql.zst 6`, `${RUN}/_server/x`);
    const r = runs([full, inc]);
    expect(r[0]).toEqual({ path: abs(`${H}/site2`), covers: SITE_PATHS.slice(0, 2) });
    expect(r.filter((x) => x.covers.length > 1).map((x) => x.path)).toEqual([abs(`${H}/site2`), abs(RUN)]);
  });

  test('never / nor a directory of several sites, even when everything shares one volume', () => {
    const one = [vol(1, '.', 'z')];
    const paths = [`/${H}/site1/shadow`, `/${H}/site2/shadow`, `/${H}/site2/info`, `/${D}/latest`];
    expect(runs(one, paths, [abs(D), `/${H}/site1`, `/${H}/site2`])).toEqual([
      { path: `/${H}/site1/shadow`, covers: [`/${H}/site1/shadow`] },
      { path: `/${H}/site2`, covers: [`/${H}/site2/shadow`, `/${H}/site2/info`] },
      { path: `/${D}/latest`, covers: [`/${D}/latest`] },
    ]);
    expect(runs(one, paths, ['/', ''])).toEqual(paths.map((p) => ({ path: p, covers: [p] })));
    expect(runs(one, paths, [])).toEqual(paths.map((p) => ({ path: p, covers: [p] })));
  });

  test('a directory the caller cannot use (it exists in staging, no room): the next deeper one, or none', () => {
    const one = [vol(1, '.', 'z')];
    expect(runs(one, SITE_PATHS, ROOTS, (d) => d !== abs(D)).map((r) => r.path)).toEqual([abs(`${H}/site2`), abs(`${D}/fs-acls.zst`), abs(`${D}/latest`), abs(RUN)]);
    expect(runs(one, SITE_PATHS, ROOTS, () => false)).toEqual(SITE_PATHS.map((p) => ({ path: p, covers: [p] })));
  });

  test('a requested directory and a path inside it: one run of the directory', () => {
    expect(runs([vol(1, '.', 'z')], [abs(RUN), abs(`${RUN}/manifest.json`)], ROOTS)).toEqual([{ path: abs(RUN), covers: [abs(RUN), abs(`${RUN}/manifest.json`)] }]);
  });
});
