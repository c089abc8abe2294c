/**
 * The readers of pg_restore / pg_dumpall scripts on text a tenant shaped: names and literals with
 * quotes, semicolons, newlines and keywords in them. (The scripts themselves come from the real
 * tools in test/kinds/postgresql/fidelity.test.ts; these pin the edge cases down one by one.)
 */
import { describe, expect, it } from 'vitest';
import { codeRunDuringLoad } from '../../../lib/kinds/postgresql/load-guard.js';
import { renameAfterDatabase, splitScript } from '../../../lib/kinds/postgresql/script.js';
import { asciiIdent } from '../../../lib/kinds/postgresql/sql.js';
import { referencedRoles, roleStatements } from '../../../lib/kinds/postgresql/restore.js';

describe('splitScript', () => {
  it('keeps statements whole across literals, quoted names, comments and dollar quotes; meta lines apart', () => {
    const script = [
      '--',
      '-- a comment; with a semicolon',
      '\\restrict abc',
      `COMMENT ON DATABASE "a;b" IS 'x; y''s
\\connect evil
DATABASE "a;b"';`,
      'CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $q$ SELECT 1; $q$;',
      "SELECT E'it\\'s; fine';",
      '\\unrestrict abc',
    ].join('\n');
    expect(splitScript(script)).toEqual([
      { kind: 'meta', text: '\\restrict abc' },
      { kind: 'statement', text: `COMMENT ON DATABASE "a;b" IS 'x; y''s\n\\connect evil\nDATABASE "a;b"';` },
      { kind: 'statement', text: 'CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $q$ SELECT 1; $q$;' },
      { kind: 'statement', text: "SELECT E'it\\'s; fine';" },
      { kind: 'meta', text: '\\unrestrict abc' },
    ]);
  });

  it('refuses a meta-command in the middle of a statement (psql would run it)', () => {
    expect(() => splitScript('SELECT 1 \\! id\n;')).toThrow(/meta-command inside a statement/);
  });
});

describe('renameAfterDatabase', () => {
  it('renames the name after DATABASE, never inside a literal, never a longer name', () => {
    const from = '"lat 1"';
    const to = asciiIdent("new 'ü\"x");
    expect(to).toBe('U&"new \'\\00fc""x"');
    expect(renameAfterDatabase(`COMMENT ON DATABASE "lat 1" IS 'DATABASE "lat 1"';`, from, to)).toBe(`COMMENT ON DATABASE U&"new '\\00fc""x" IS 'DATABASE "lat 1"';`);
    expect(renameAfterDatabase('ALTER ROLE app IN DATABASE "lat 1" SET search_path TO \'a\';', from, to)).toBe(`ALTER ROLE app IN DATABASE ${to} SET search_path TO 'a';`);
    expect(renameAfterDatabase('GRANT CONNECT ON DATABASE "lat 12" TO app;', from, to)).toBe('GRANT CONNECT ON DATABASE "lat 12" TO app;');
    expect(renameAfterDatabase('ALTER DATABASE shop OWNER TO t;', 'shop', to)).toBe(`ALTER DATABASE ${to} OWNER TO t;`);
    expect(renameAfterDatabase('ALTER DATABASE shop2 OWNER TO t;', 'shop', to)).toBe('ALTER DATABASE shop2 OWNER TO t;');
  });

  it('writes any name in ASCII, whatever client_encoding the script sets', () => {
    expect(asciiIdent('plain')).toBe('"plain"');
    expect(asciiIdent('日本\\x')).toBe('U&"\\65e5\\672c\\\\x"');
    expect(asciiIdent('😀')).toBe('U&"\\+01f600"');
  });
});

describe('codeRunDuringLoad', () => {
  it('finds functions of the dump in CHECK constraints, generated columns, domains and partition keys', () => {
    const schema = `
CREATE TABLE public.c (
    id integer,
    CONSTRAINT c_id_check CHECK ((public.wrap(id, 'check'::text) > 0))
);
CREATE TABLE public.g (
    id integer,
    x integer GENERATED ALWAYS AS (public.wrap(id, 'generated'::text)) STORED
);
CREATE DOMAIN "my schema".d AS integer
	CONSTRAINT d_check CHECK ((VALUE OPERATOR("my schema".+++) 1));
CREATE TABLE public.p (id integer) PARTITION BY RANGE (public.wrap(id, 'p'::text));
ALTER TABLE public.q ADD CONSTRAINT q_check CHECK ((public.f(id) > 0));
`;
    expect(codeRunDuringLoad(schema)).toEqual([
      'table public.c: CHECK calls public.wrap()',
      'table public.g: GENERATED ALWAYS AS calls public.wrap()',
      'domain "my schema".d: CHECK calls OPERATOR("my schema".+++)',
      'table public.p: PARTITION BY RANGE calls public.wrap()',
      'table public.q: CHECK calls public.f()',
    ]);
  });

  it('leaves built-ins, defaults, literals and NOT VALID constraints alone', () => {
    const schema = `
CREATE TABLE public.ok (
    id integer DEFAULT public.pwn('default'::text),
    t text CHECK ((char_length(t) < 100)),
    u text CHECK ((t <> 'public.f(1)'::text)),
    g text GENERATED ALWAYS AS (upper(t)) STORED,
    h text GENERATED ALWAYS AS (pg_catalog.lower(t)) STORED
);
ALTER TABLE public.ok ADD CONSTRAINT later CHECK ((public.f(id) > 0)) NOT VALID;
COMMENT ON TABLE public.ok IS 'CHECK (public.f(1))';
`;
    expect(codeRunDuringLoad(schema)).toEqual([]);
  });
});

describe('referencedRoles and roleStatements', () => {
  it('owners and grantees of ALTER and GRANT statements only, the database owner, role settings and large objects included', () => {
    const script = `
ALTER DATABASE "lat 1" OWNER TO tenant;
ALTER ROLE "app user" IN DATABASE "lat 1" SET search_path TO 'a';
ALTER LARGE OBJECT 16394 OWNER TO lo_owner;
GRANT SELECT ON LARGE OBJECT 16394 TO reader, "Other";
ALTER DEFAULT PRIVILEGES FOR ROLE definer GRANT SELECT ON TABLES TO PUBLIC;
COMMENT ON TABLE t IS 'ALTER TABLE t OWNER TO nobody; GRANT x TO nobody2;';
GRANT CONNECT ON DATABASE x TO pg_read_all_data;
`;
    expect([...referencedRoles(script)].sort()).toEqual(['Other', 'app user', 'definer', 'lo_owner', 'reader', 'tenant']);
  });

  it('CREATE, ALTER and COMMENT of the roles the server lacks, their memberships; not the settings of another database', () => {
    const globals = `
\\restrict k
CREATE ROLE tenant;
ALTER ROLE tenant WITH NOSUPERUSER INHERIT LOGIN PASSWORD 'SCRAM-SHA-256$4096:x';
COMMENT ON ROLE tenant IS 'the tenant''s
role';
ALTER ROLE tenant SET work_mem TO '5MB';
ALTER ROLE tenant IN DATABASE other SET work_mem TO '1MB';
CREATE ROLE app;
ALTER ROLE app WITH NOLOGIN;
CREATE ROLE unrelated;
GRANT app TO tenant GRANTED BY postgres;
\\unrestrict k
`;
    expect(roleStatements(globals, new Set(['tenant']), new Set(['postgres']))).toEqual({
      created: ['app', 'tenant'],
      statements: [
        'CREATE ROLE app;',
        'ALTER ROLE app WITH NOLOGIN;',
        'CREATE ROLE tenant;',
        "ALTER ROLE tenant WITH NOSUPERUSER INHERIT LOGIN PASSWORD 'SCRAM-SHA-256$4096:x';",
        "COMMENT ON ROLE tenant IS 'the tenant''s\nrole';",
        "ALTER ROLE tenant SET work_mem TO '5MB';",
        'GRANT app TO tenant;',
      ],
    });
  });
});
