import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import {
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import {
  aesGcmCodec,
  generateAesKey,
  generateSessionId,
  type SessionRecord,
  type SessionStore,
} from '@sessile/core';
import { FileStore } from '@sessile/file';
import { LevelStore } from '@sessile/level';
import { SqliteStore } from '@sessile/sqlite';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { CLI, jsonOf, runCli, seed, tempRoot } from './helpers.js';

const require = createRequire(import.meta.url);
const nextDir = tempRoot('sessile-cli-commands-');

async function sqliteWith(liveCount: number, expiredCount: number) {
  const path = `${nextDir()}.db`;
  const store = await SqliteStore.open({ path });
  const now = Date.now();
  const live = Array.from({ length: liveCount }, () => generateSessionId());
  const expired = Array.from({ length: expiredCount }, () => generateSessionId());
  await seed(store, live, (index) => now + 3_600_000 + index * 1000);
  // Written live, then moved into the past, so they sit unswept.
  await seed(store, expired, () => now + 3_600_000);
  for (const id of expired) await store.touch(id, now - 1000);
  await store.close();
  return { path, url: `sqlite:${path}`, live, expired, now };
}

/** A record's bytes as text, whichever byte array the store read them into. */
function asText(record: SessionRecord | undefined) {
  return record && { text: Buffer.from(record.data).toString(), expiresAt: record.expiresAt };
}

const COMMANDS = ['stats', 'ls', 'show', 'sweep', 'copy', 'import'];

describe('--help', () => {
  it('covers every command, both kinds of address and the exit codes', async () => {
    const result = await runCli(['--help']);
    expect(result.code).toBe(0);
    for (const command of COMMANDS) {
      expect(result.stdout).toMatch(new RegExp(`^  ${command} `, 'm'));
    }
    for (const text of ['sqlite:PATH', 'connect-pg-simple:', 'SESSILE_AES_KEYS', '130']) {
      expect(result.stdout).toContain(text);
    }
    // As the README's table says: stats, ls and show end by the signal (143 for SIGTERM).
    expect(result.stdout).toMatch(/^ {2}130 {2}copy, import or sweep interrupted/m);
  });

  it("copy's and import's --help say which sessions a --ledger run brings in line: those the new app has not saved", async () => {
    for (const command of ['copy', 'import']) {
      const { stdout } = await runCli([command, '--help']);
      expect(stdout.replace(/\s+/g, ' '), command).toContain(
        'brought in line with the source where the new app has not saved them since',
      );
    }
  });

  it('`sessile help [command]` prints the help and exits 0, as --help does', async () => {
    for (const argv of [['help'], ['help', 'stats'], ['help', 'stats', '--json']]) {
      const result = await runCli(argv);
      expect([result.code, result.stdout.includes('Usage: sessile')]).toEqual([0, true]);
      expect(result.stdout).not.toContain('ERR_USAGE');
    }
  });

  it('--version prints the package version and exits 0, for sessile and for every command', async () => {
    const { version } = JSON.parse(
      readFileSync(new URL('../package.json', import.meta.url), 'utf8'),
    );
    for (const argv of [
      ['--version'],
      ['-V'],
      ...COMMANDS.map((command) => [command, '--version']),
    ]) {
      const result = await runCli(argv);
      expect([argv, result.code, result.stdout]).toEqual([argv, 0, `${version}\n`]);
    }
  });

  it('an unknown command or option exits 2', async () => {
    expect((await runCli(['bogus'])).code).toBe(2);
    expect((await runCli(['stats', 'sqlite:x.db', '--bogus'])).code).toBe(2);
    expect((await runCli([])).code).toBe(2);
  });

  it.each([
    ['an unknown option', ['ls', '--json', '--bogus', 'file:x'], "unknown option '--bogus'"],
    ['a missing argument', ['ls', '--json'], "missing required argument 'url'"],
    ['an option without its value', ['sweep', '--json', 'file:x', '--budget'], "'--budget <ms>'"],
    ['a missing required option', ['copy', '--json', '--from', 'file:x'], "'--to <url>'"],
    [
      'a misspelt required option',
      ['copy', '--json', '--form', 'file:x', '--to', 'file:y'],
      "unknown option '--form'",
    ],
    [
      "import's misspelt required option",
      ['import', '--json', '--from', 'session-file-store:x', '--too', 'file:y'],
      "unknown option '--too'",
    ],
    ["import's missing required option", ['import', '--json', '--to', 'file:y'], "'--from <peer>'"],
    ['an unknown command to help', ['help', 'bogus', '--json'], "unknown command 'bogus'"],
  ])('with --json, %s is one JSON document on stdout', async (_name, args, message) => {
    const result = await runCli(args);
    expect(result.code).toBe(2);
    const report = jsonOf<{ ok: boolean; error: { message: string } }>(result);
    expect(report).toMatchObject({ ok: false, error: { code: 'ERR_USAGE', exitCode: 2 } });
    expect(report.error.message).toContain(message);
    const human = await runCli(args.filter((arg) => arg !== '--json'));
    expect(human.code).toBe(2);
    expect(human.stdout).toBe('');
    expect(human.stderr).toContain(message);
  });
});

describe('options before the command name', () => {
  it('--json and --max-record-bytes work before the command as after it', async () => {
    const { url, live } = await sqliteWith(3, 0);
    const stats = await runCli(['--json', 'stats', url]);
    expect(stats.code, stats.stderr).toBe(0);
    expect(jsonOf(stats)).toMatchObject({ live: 3, maxRecordBytes: 1048576 });
    const limited = await runCli(['--max-record-bytes', '4096', '--json', 'stats', url]);
    expect(jsonOf(limited)).toMatchObject({ live: 3, maxRecordBytes: 4096 });
    // Given in both places, the same value is one option; different values are refused.
    const both = await runCli([
      '--max-record-bytes=4096',
      'stats',
      url,
      '--max-record-bytes',
      '4096',
      '--json',
    ]);
    expect(jsonOf(both)).toMatchObject({ maxRecordBytes: 4096 });
    const twice = await runCli([
      '--max-record-bytes',
      '4096',
      'stats',
      url,
      '--max-record-bytes',
      '8192',
    ]);
    expect(twice.code).toBe(2);
    expect(twice.stderr).toContain("--max-record-bytes is given twice ('4096', '8192')");
    const listed = await runCli(['--json', 'ls', url]);
    expect(jsonOf<{ ids: string[] }>(listed).ids.sort()).toEqual([...live].sort());
    // A failure of the command still prints one JSON document.
    const missing = await runCli(['--json', 'stats', `sqlite:${nextDir()}.db`]);
    expect(missing.code).toBe(1);
    expect(jsonOf(missing)).toMatchObject({ ok: false, error: { code: 'ERR_STORE_IO' } });
  });

  it('without a command they say none was given, and an option no command takes there is refused', async () => {
    for (const argv of [['--json'], ['--max-record-bytes', '4096', '--json']]) {
      const result = await runCli(argv);
      expect(result.code).toBe(2);
      expect(jsonOf(result)).toMatchObject({
        ok: false,
        error: {
          code: 'ERR_USAGE',
          message: 'no command given (stats, ls, show, sweep, copy or import)',
        },
      });
    }
    const bad = await runCli(['--max-record-bytes', '0', 'stats', 'sqlite:x.db', '--json']);
    expect(bad.code).toBe(2);
    expect(jsonOf(bad)).toMatchObject({ error: { code: 'ERR_USAGE' } });
    const other = await runCli([
      '--dry-run',
      'copy',
      '--from',
      'sqlite:a.db',
      '--to',
      'sqlite:b.db',
    ]);
    expect(other.code).toBe(2);
    expect(other.stderr).toContain("unknown option '--dry-run'");
    expect((await runCli(['--help'])).stdout).toMatch(/^ {2}--json /m);
  });
});

describe('store addresses', () => {
  it("a peer's address given to copy, and a store's given to import, say which command reads it", async () => {
    const wrongCommand = [
      [
        ['copy', '--from', 'connect-sqlite3:./app.db', '--to', 'sqlite:./s.db'],
        'connect-sqlite3: is a peer store: sessile import --from connect-sqlite3:./app.db --to URL reads it',
      ],
      [
        ['import', '--from', 'sqlite:./s.db', '--to', 'file:./s'],
        "It names a sessile store, which sessile copy --from reads; a peer's data there is connect-sqlite3:./s.db or better-sqlite3-session-store:./s.db",
      ],
      [
        ['import', '--from', 'redis://:Secret-pw@127.0.0.1:6379?prefix=app:', '--to', 'file:./s'],
        "a peer's data there is connect-redis:redis://:***@127.0.0.1:6379.",
      ],
    ];
    for (const [args, message] of wrongCommand) {
      const result = await runCli([...(args as string[]), '--json']);
      expect(result.code).toBe(2);
      expect(jsonOf(result)).toMatchObject({ ok: false, error: { code: 'ERR_USAGE' } });
      expect(result.stderr).toContain(message);
      expect(result.stderr).not.toContain('Secret-pw');
    }
  });

  it.each([
    ['no scheme', 'sessions.db', 'not a store address'],
    ['an unknown store', 'mongodb://127.0.0.1/x', "unknown store 'mongodb:'"],
    ['no path', 'sqlite:', 'names no path'],
    ['a broken URL', 'redis://[nope', 'not a valid URL'],
    ['an unknown parameter', 'redis://127.0.0.1:6379?db=2', "unknown parameter 'db'"],
    [
      'a Redis parameter given twice',
      'redis://127.0.0.1:6379/1?prefix=a:&prefix=b:',
      "parameter 'prefix' is given twice",
    ],
    [
      'a PostgreSQL parameter given twice',
      'postgres://postgres@127.0.0.1:5432/test?table=a&table=b',
      "parameter 'table' is given twice",
    ],
    [
      'a broken percent-escape in the database name',
      'postgres://postgres@127.0.0.1:5432/test%zz',
      'not percent-encoded',
    ],
    [
      'a broken percent-escape in the user name, the default database',
      'postgres://post%zz@127.0.0.1:5432',
      'not percent-encoded',
    ],
  ])('%s exits 2 and says why', async (_name, address, message) => {
    const result = await runCli(['stats', address, '--json']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(message);
    expect(jsonOf(result)).toMatchObject({ ok: false, error: { code: 'ERR_USAGE', exitCode: 2 } });
  });

  it.each([
    [
      'an unknown parameter',
      ['stats', 'postgres://app:Secret-pw@127.0.0.1:5432/db?sslmod=require'],
    ],
    ['an unknown Redis parameter', ['stats', 'redis://:Secret-pw@127.0.0.1:6379?db=2']],
    ['a port out of range', ['stats', 'postgres://app:Secret-pw@db.example:65536/db']],
    ['a broken percent-escape', ['stats', 'postgres://app:Secret-pw@db.example/db%zz']],
    ['an unknown store', ['stats', 'mongodb://app:Secret-pw@db.example/db']],
    ['a peer port out of range', ['import', '--from', 'connect-redis:redis://:Secret-pw@c:70000']],
    ['a peer of the wrong kind', ['import', '--from', 'connect-redis:http://:Secret-pw@cache']],
    ['an unknown peer', ['import', '--from', 'connect-mongo:mongodb://app:Secret-pw@db.example']],
    ['a target with a parameter', ['copy', '--from', 'sqlite:x', '--to', 'redis://:Secret-pw@c?x']],
  ])('%s is refused without showing the password', async (_name, args) => {
    const to = args.includes('import') ? ['--to', `sqlite:${nextDir()}.db`] : [];
    const result = await runCli([...args, ...to, '--json']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(':***@');
    expect(`${result.stderr}${result.stdout}`).not.toContain('Secret-pw');
  });

  it.each([
    ['a store', ['stats', 'postgres://app@127.0.0.1:5432/db?password=Secret-pw']],
    [
      'a Redis peer',
      ['import', '--from', 'connect-redis:redis://127.0.0.1:6379?password=Secret-pw'],
    ],
    ['an address that does not parse', ['stats', 'postgres://[app?sslmode=x&password=Secret-pw']],
  ])('a password given as a parameter in %s is hidden too', async (_name, args) => {
    const to = args.includes('import') ? ['--to', `sqlite:${nextDir()}.db`] : [];
    const result = await runCli([...args, ...to, '--json']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('password=***');
    expect(`${result.stderr}${result.stdout}`).not.toContain('Secret-pw');
  });

  it('a PostgreSQL peer keeps its password parameter hidden in every message and report', async () => {
    const result = await runCli([
      'import',
      '--from',
      'connect-pg-simple:postgres://postgres@127.0.0.1:5432/test?password=Secret-pw',
      '--table',
      `no_such_table_${process.pid}`,
      '--to',
      `sqlite:${nextDir()}.db`,
      '--json',
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('?password=***');
    expect(`${result.stderr}${result.stdout}`).not.toContain('Secret-pw');
  });

  it.each(['redis:/10.0.0.5:6379', 'redis:', 'redis://10.0.0.5:6379/x'])(
    '%s, which names no Redis server and database, exits 2 naming it',
    async (address) => {
      const result = await runCli(['stats', address]);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(`${address}: not a Redis server address`);
    },
  );

  it.each([
    ['connect-redis:redis://127.0.0.1:6379/x', 'not a Redis server address'],
    ['connect-redis:redis:/127.0.0.1:6379', 'not a Redis server address'],
    ['connect-redis:redis://127.0.0.1:6379/1?db=2', "unknown parameter 'db'"],
  ])('the peer address %s exits 2 naming it', async (address, message) => {
    const result = await runCli(['import', '--from', address, '--to', `sqlite:${nextDir()}.db`]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`${address}: ${message}`);
  });

  it.each([
    ['connect-redis:redis://127.0.0.1:6379/1?prefix=myapp:', '--prefix myapp:'],
    ['connect-pg-simple:postgres://postgres@127.0.0.1:5432/test?table=mine', '--table mine'],
    ['connect-pg-simple:postgres://postgres@127.0.0.1:5432/test?schema=app', '--schema app'],
  ])(
    "a store address's parameter in the peer address %s is refused, not passed over for the default",
    async (address, option) => {
      const target = `${nextDir()}.db`;
      const result = await runCli(['import', '--from', address, '--to', `sqlite:${target}`]);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(`give ${option} instead`);
      expect(existsSync(target)).toBe(false);
    },
  );

  it.each([
    ['session-file-store:./sessions', ['--prefix', 'app:'], '--prefix is read by connect-redis'],
    ['connect-redis:redis://127.0.0.1:6379', ['--table', 'sessions'], '--table is read by'],
    ['connect-sqlite3:./sessions.db', ['--ttl', '86400'], '--ttl is read by session-file-store'],
    ['better-sqlite3-session-store:./s.db', ['--schema', 'app'], '--schema is read by'],
    [
      'level-session-store:./sessions',
      ['--file-extension', '.sess'],
      '--file-extension is read by session-file-store',
    ],
    ['session-file-store:./sessions', ['--file-extension', ''], '--file-extension must be'],
    ['session-file-store:./sessions', ['--file-extension', '/x.json'], '--file-extension must be'],
  ])(
    'an option %s does not read (%j) is refused, not passed over',
    async (from, option, message) => {
      const target = `${nextDir()}.db`;
      const result = await runCli([
        'import',
        '--from',
        from,
        ...option,
        '--to',
        `sqlite:${target}`,
      ]);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(message);
      expect(existsSync(target)).toBe(false);
    },
  );

  it('~/ in a store or peer address is the home directory, as a shell would read it', async () => {
    const { url, live } = await sqliteWith(2, 0);
    const home = nextDir();
    const cwd = nextDir();
    mkdirSync(home);
    mkdirSync(cwd);
    const env = { HOME: home };
    const copied = await runCli(['copy', '--from', url, '--to', 'sqlite:~/copied.db', '--json'], {
      env,
      cwd,
    });
    expect([copied.code, jsonOf(copied)]).toMatchObject([0, { counts: { written: 2 } }]);
    expect(readdirSync(cwd)).toEqual([]);
    const listed = await runCli(['ls', 'sqlite:~/copied.db'], { env, cwd });
    expect(listed.stdout.split('\n').filter(Boolean).sort()).toEqual([...live].sort());
    mkdirSync(join(home, 'sessions'));
    const imported = await runCli(
      ['import', '--from', 'session-file-store:~/sessions', '--to', `sqlite:${nextDir()}.db`],
      { env, cwd },
    );
    expect(imported.code).toBe(0);
  });

  it('a store that is not there exits 1 and is not created', async () => {
    const path = `${nextDir()}.db`;
    const result = await runCli(['stats', `sqlite:${path}`]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`no store there: ${path} does not exist`);
    expect((await runCli(['ls', `level:${path}`])).code).toBe(1);
  });

  it("an app's own SQLite file or an empty directory is not a store, and reading it writes nothing", async () => {
    const path = `${nextDir()}.db`;
    const app = new Database(path);
    app.exec('CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)');
    app.close();
    const before = readFileSync(path);
    for (const command of ['stats', 'ls', 'sweep']) {
      const result = await runCli([command, `sqlite:${path}`]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(
        `no store there: ${path} is an SQLite database with no 'sessions' table`,
      );
    }
    expect(readFileSync(path).equals(before)).toBe(true);
    const empty = nextDir();
    mkdirSync(empty, { recursive: true });
    const listed = await runCli(['ls', `level:${empty}`]);
    expect(listed.code).toBe(1);
    expect(listed.stderr).toContain(
      `no store there: ${empty} is an empty directory, not a LevelDB database yet`,
    );
    expect(readdirSync(empty)).toEqual([]);
  });

  it('a directory that is not a file store is refused by every reading command, and left as it was', async () => {
    // Someone's directory: the file store's sweep would unlink what is in its one-letter subdirectories.
    const mine = nextDir();
    mkdirSync(join(mine, 'a'), { recursive: true });
    writeFileSync(join(mine, 'a', 'notes.txt'), 'keep me');
    writeFileSync(join(mine, 'sid.json'), '{"cookie":{}}');
    const runs = [
      ...['stats', 'ls', 'sweep'].map((command) => [command, `file:${mine}`]),
      ['show', `file:${mine}`, '--', generateSessionId()],
      ['copy', '--from', `file:${mine}`, '--to', `sqlite:${nextDir()}.db`],
    ];
    for (const args of runs) {
      const result = await runCli(args);
      expect(result.code, result.stderr).toBe(1);
      expect(result.stderr).toContain(
        `file:${mine}: ${mine} holds other files (a, sid.json) and is not a file store`,
      );
    }
    expect(readdirSync(mine).sort()).toEqual(['a', 'sid.json']);
    expect(readFileSync(join(mine, 'a', 'notes.txt'), 'utf8')).toBe('keep me');
  });

  it('an unreadable file exits 1 naming it, and is left as it was', async () => {
    const path = `${nextDir()}.db`;
    writeFileSync(path, 'not a database '.repeat(200));
    const sqlite = await runCli(['stats', `sqlite:${path}`]);
    expect(sqlite.code).toBe(1);
    expect(sqlite.stderr).toContain(`${path} is not a SQLite database`);
    const level = await runCli(['copy', '--from', `level:${path}`, '--to', `sqlite:${path}.2`]);
    expect(level.code).toBe(1);
    expect(level.stderr).toContain(path);
  });
});

describe('stats, ls and show', () => {
  it('stats counts live and unswept expired sessions and the expiry range', async () => {
    const { url, live, now } = await sqliteWith(5, 3);
    const stats = jsonOf(await runCli(['stats', url, '--json']));
    expect(stats).toMatchObject({
      live: 5,
      corrupt: 0,
      expiredNotSwept: 3,
      soonestExpiry: new Date(now + 3_600_000).toISOString(),
      latestExpiry: new Date(now + 3_600_000 + (live.length - 1) * 1000).toISOString(),
      owners: 0,
      capabilities: { ownerIndex: true },
    });
    expect(stats.sizeOnDiskBytes).toBeGreaterThan(0);
  });

  it('stats counts a corrupt record as corrupt, never among the live sessions, and exits 5', async () => {
    // SQLite: a row edited to expire at no finite time, which count() takes for live.
    const { path, url } = await sqliteWith(3, 0);
    const db = new Database(path);
    db.prepare('UPDATE sessions SET expires_at = 9e999 WHERE rowid = 1').run();
    db.close();
    // File: a record whose last payload byte flipped, so its checksum fails.
    const dir = nextDir();
    const files = await FileStore.open({ path: dir });
    const fileIds = [generateSessionId(), generateSessionId(), generateSessionId()];
    await seed(files, fileIds, () => Date.now() + 60_000);
    await files.close();
    const damaged = fileIds[0] as string;
    const record = join(dir, damaged.slice(0, 1), damaged);
    const bytes = readFileSync(record);
    const last = bytes.length - 1;
    bytes[last] = (bytes[last] as number) ^ 0xff;
    writeFileSync(record, bytes);

    for (const [store, expected] of [
      [url, 2],
      [`file:${dir}`, fileIds.length - 1],
    ] as const) {
      const json = await runCli(['stats', store, '--json']);
      expect(json.code, json.stderr).toBe(5);
      expect(jsonOf(json), store).toMatchObject({ live: expected, corrupt: 1 });
      const text = await runCli(['stats', store]);
      expect(text.stdout).toMatch(new RegExp(`^live sessions +${expected}$`, 'm'));
      expect(text.stdout).toMatch(/^corrupt records +1$/m);
    }
  });

  it('stats reports a level: record under a key no session id can have, which ids() leaves out, as unnamed, and exits 5', async () => {
    const dir = nextDir();
    const store = await LevelStore.open({ path: dir });
    const ids = [generateSessionId(), generateSessionId()];
    await seed(store, ids, () => Date.now() + 3_600_000);
    await store.close();
    // Another program's write: a live record's bytes under a key that names no session id.
    const { ClassicLevel } = createRequire(require.resolve('@sessile/level'))('classic-level');
    const db = new ClassicLevel(dir, { keyEncoding: 'view', valueEncoding: 'view' });
    await db.open();
    const bytes = await db.get(Buffer.from(`r${ids[0]}`, 'latin1'));
    await db.put(Buffer.from('rnot a session id!', 'latin1'), bytes);
    await db.close();
    const json = await runCli(['stats', `level:${dir}`, '--json']);
    expect(json.code, json.stderr).toBe(5);
    expect(jsonOf(json)).toMatchObject({ live: 2, corrupt: 0, unnamed: 1 });
    const text = await runCli(['stats', `level:${dir}`]);
    expect(text.code).toBe(5);
    expect(text.stdout).toMatch(/^unnamed records +1 \(counted by the store/m);
    // SQLite counts exactly what it lists, so a row under such an id is out of stats' sight.
    const { path, url } = await sqliteWith(2, 0);
    const sqlite = new Database(path);
    sqlite
      .prepare('INSERT INTO sessions (id, data, expires_at) VALUES (?, ?, ?)')
      .run('not a session id!', Buffer.from('{}'), Date.now() + 3_600_000);
    sqlite.close();
    const unseen = await runCli(['stats', url, '--json']);
    expect(unseen.code, unseen.stderr).toBe(0);
    expect(jsonOf(unseen)).toMatchObject({ live: 2, unnamed: null });
    expect((await runCli(['stats', url])).stdout).toMatch(/^unnamed records +unknown/m);
  });

  it('stats counts the distinct owners of live sessions', async () => {
    const path = `${nextDir()}.db`;
    const store = await SqliteStore.open({ path });
    const now = Date.now();
    const data = new TextEncoder().encode('{}');
    const owned = { ada: 2, grace: 1 };
    for (const [owner, sessions] of Object.entries(owned)) {
      for (let i = 0; i < sessions; i++) {
        await store.set(generateSessionId(), { data, expiresAt: now + 60_000, owner });
      }
    }
    await store.set(generateSessionId(), { data, expiresAt: now + 60_000 });
    await store.set(generateSessionId(), { data, expiresAt: now + 60_000, owner: 'edsger' });
    const gone = generateSessionId();
    await store.set(gone, { data, expiresAt: now + 60_000, owner: 'barbara' });
    await store.delete(gone);
    await store.close();
    expect(jsonOf(await runCli(['stats', `sqlite:${path}`, '--json']))).toMatchObject({
      live: 5,
      owners: 3,
    });
    expect((await runCli(['stats', `sqlite:${path}`])).stdout).toMatch(/^owners +3 \(indexed\)$/m);
  });

  it('stats measures a store reached through a symbolic link where it is, not the link', async () => {
    const { path } = await sqliteWith(20, 0);
    const level = nextDir();
    const store = await LevelStore.open({ path: level });
    await seed(store, [generateSessionId()], () => Date.now() + 60_000);
    await store.close();
    for (const [scheme, target] of [
      ['sqlite', path],
      ['level', level],
    ]) {
      const link = `${nextDir()}-link`;
      symlinkSync(target as string, link);
      const linked = jsonOf(await runCli(['stats', `${scheme}:${link}`, '--json']));
      // At least the SQLite file, or the LevelDB directory's files; the link itself is a few bytes.
      const least =
        scheme === 'sqlite'
          ? statSync(target as string).size
          : readdirSync(target as string).reduce(
              (total, name) => total + statSync(join(target as string, name)).size,
              0,
            );
      expect(least).toBeGreaterThan(lstatSync(link).size);
      expect(linked.sizeOnDiskBytes).toBeGreaterThanOrEqual(least);
    }
  });

  it('ls streams exactly the live ids', async () => {
    const { url, live } = await sqliteWith(40, 4);
    const plain = await runCli(['ls', url]);
    expect(plain.code).toBe(0);
    expect(plain.stdout.trim().split('\n').sort()).toEqual([...live].sort());
    const json = jsonOf<{ ids: string[]; count: number }>(await runCli(['ls', url, '--json']));
    expect(json.count).toBe(40);
    expect(json.ids.sort()).toEqual([...live].sort());
  });

  it('ls into a reader that stops early exits 0, and into a full disk exits 1 in one line', async () => {
    const { url } = await sqliteWith(3000, 0);
    const piped = spawn(process.execPath, [CLI, 'ls', url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    piped.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    // As `head -1` does: one chunk read, then the pipe closed.
    piped.stdout.once('data', () => piped.stdout.destroy());
    const [code] = (await once(piped, 'close')) as [number | null];
    expect([code, stderr]).toEqual([0, '']);

    const full = openSync('/dev/full', 'w');
    try {
      const result = spawnSync(process.execPath, [CLI, 'ls', url], {
        stdio: ['ignore', full, 'pipe'],
        encoding: 'utf8',
      });
      expect([result.status, result.stderr]).toEqual([
        1,
        'sessile: cannot write the output (ENOSPC)\n',
      ]);
    } finally {
      closeSync(full);
    }
  });

  it('ls --json that fails part way still prints one JSON document, with the failure in it', async () => {
    const path = nextDir();
    const store = await LevelStore.open({ path });
    const data = new Uint8Array(2048).fill(120);
    for (let index = 0; index < 3000; index++) {
      await store.set(generateSessionId(), { data, expiresAt: Date.now() + 3_600_000 });
    }
    await store.close();
    const tables = readdirSync(path).filter((name) => name.endsWith('.ldb'));
    expect(tables.length).toBeGreaterThan(0);
    // A damaged disk block in the middle of each table, where the records are, away from its index.
    for (const name of tables) {
      const file = join(path, name);
      const bytes = readFileSync(file);
      bytes.fill(0x41, bytes.length >> 1, (bytes.length >> 1) + 4096);
      writeFileSync(file, bytes);
    }
    const result = await runCli(['ls', `level:${path}`, '--json']);
    expect(result.code, result.stderr).toBe(1);
    const report = jsonOf<{ ids: string[]; count: number; ok: boolean; error: object }>(result);
    expect(report).toMatchObject({ ok: false, error: { code: 'ERR_STORE_IO', exitCode: 1 } });
    expect(report.count).toBe(report.ids.length);
    expect(report.count).toBeLessThan(3000);
  });

  it('show redacts values unless --reveal, and tells a missing id (4) from a malformed one (2)', async () => {
    const { url, live } = await sqliteWith(2, 1);
    const id = live[1] as string;
    const redacted = jsonOf(await runCli(['show', url, '--json', '--', id]));
    expect(redacted).toMatchObject({
      id,
      codec: 'json',
      data: { user: '[redacted string(6)]', index: '[redacted number]' },
    });
    const revealed = jsonOf(await runCli(['show', url, '--reveal', '--json', '--', id]));
    expect(revealed.data).toEqual({ user: 'user-1', index: 1 });
    const human = await runCli(['show', url, '--', id]);
    expect(human.stdout).toContain('[redacted string(6)]');
    expect(human.stdout).not.toContain('user-1');
    expect((await runCli(['show', url, '--', generateSessionId()])).code).toBe(4);
    expect((await runCli(['show', url, 'not.an.id'])).code).toBe(2);
  });

  it('show given a session id that starts with - before -- says to put it after --, and never prints the version for it', async () => {
    const { url } = await sqliteWith(0, 0);
    const path = url.slice('sqlite:'.length);
    const store = await SqliteStore.open({ path });
    // -V is the version flag, -h help: commander read such an id as those flags.
    const ids = [`-V${generateSessionId().slice(2)}`, `-h${generateSessionId().slice(2)}`];
    await seed(store, ids, () => Date.now() + 60_000);
    await store.close();
    for (const id of ids) {
      const before = await runCli(['show', url, id, '--json']);
      expect(before.code, before.stdout).toBe(2);
      expect(jsonOf(before)).toMatchObject({ ok: false, error: { code: 'ERR_USAGE' } });
      expect(before.stderr).toContain(
        "starts with '-', which reads as an option: give it after --",
      );
      expect(before.stderr).not.toContain(id);
      const after = await runCli(['show', url, '--json', '--', id]);
      expect(after.code, after.stderr).toBe(0);
      expect(jsonOf(after)).toMatchObject({ id });
    }
    // An option shaped like an id is still the option.
    const limited = await runCli([
      'show',
      '--max-record-bytes',
      '4096',
      url,
      '--',
      ids[0] as string,
    ]);
    expect(limited.code, limited.stderr).toBe(0);
  });

  // What toExpressStore wrote for a browser-session cookie before defaultTtlMs was bounded.
  it('stats and show report an expiry past the Date range instead of failing', async () => {
    const path = `${nextDir()}.db`;
    const store = await SqliteStore.open({ path });
    const [lasting, usual] = [generateSessionId(), generateSessionId()];
    const now = Date.now();
    await seed(store, [lasting, usual], () => now + 60_000);
    await store.close();
    // Written by hand (or by a version before stores refused it): no store's set() takes it.
    const db = new Database(path);
    db.prepare('UPDATE sessions SET expires_at = 9e15 WHERE id = ?').run(lasting);
    db.close();
    const stats = await runCli(['stats', `sqlite:${path}`, '--json']);
    expect(stats.code).toBe(0);
    expect(jsonOf(stats)).toMatchObject({
      live: 2,
      soonestExpiry: new Date(now + 60_000).toISOString(),
      latestExpiry: 'beyond year 275760 (9000000000000000 ms since the epoch)',
    });
    const show = await runCli(['show', `sqlite:${path}`, '--', lasting]);
    expect(show.code).toBe(0);
    expect(show.stdout).toContain('expires            beyond year 275760');
  });

  it('show decodes encrypted sessions with the keys in SESSILE_AES_KEYS', async () => {
    const path = `${nextDir()}.db`;
    const key = generateAesKey();
    const codec = aesGcmCodec({ keys: [key] });
    const store = await SqliteStore.open({ path });
    const id = generateSessionId();
    await store.set(id, {
      data: codec.encode({ createdAt: 1, lastAccessedAt: 2, data: { secret: 'swordfish' } }, id),
      expiresAt: Date.now() + 60_000,
    });
    await store.close();
    const withoutKey = await runCli(['show', `sqlite:${path}`, '--', id]);
    expect(withoutKey.code).toBe(1);
    expect(withoutKey.stderr).toContain('SESSILE_AES_KEYS');
    const withKey = await runCli(['show', `sqlite:${path}`, '--reveal', '--json', '--', id], {
      env: { SESSILE_AES_KEYS: `${generateAesKey()},${key}` },
    });
    expect(jsonOf(withKey)).toMatchObject({ data: { secret: 'swordfish' } });
    const badKey = await runCli(['show', `sqlite:${path}`, '--', id], {
      env: { SESSILE_AES_KEYS: 'c2hvcnQ=' },
    });
    expect(badKey.code).toBe(2);
  });

  it('show tells a session a newer version encrypted (a later aesGcmCodec format) from a damaged one', async () => {
    const path = `${nextDir()}.db`;
    const key = generateAesKey();
    const codec = aesGcmCodec({ keys: [key] });
    const store = await SqliteStore.open({ path });
    const [newer, damaged] = [generateSessionId(), generateSessionId()];
    for (const [id, first] of [
      [newer, 2],
      [damaged, 0],
    ] as const) {
      const data = codec.encode({ createdAt: 1, lastAccessedAt: 2, data: {} }, id);
      data[0] = first;
      await store.set(id, { data, expiresAt: Date.now() + 60_000 });
    }
    await store.close();
    const env = { SESSILE_AES_KEYS: key };
    const shown = await runCli(['show', `sqlite:${path}`, '--json', '--', newer], { env });
    expect(shown.code).toBe(1);
    expect(jsonOf(shown)).toMatchObject({
      ok: false,
      error: {
        code: 'ERR_UNSUPPORTED',
        message: expect.stringMatching(/written by a newer version .*upgrade @sessile\/cli/),
      },
    });
    const corrupt = await runCli(['show', `sqlite:${path}`, '--json', '--', damaged], { env });
    expect(jsonOf(corrupt)).toMatchObject({ error: { code: 'ERR_CORRUPT_RECORD' } });
  });
});

describe('sweep', () => {
  it('says what it did in words that agree with the numbers', async () => {
    const { url } = await sqliteWith(1, 1);
    const first = await runCli(['sweep', url]);
    expect([first.code, first.stdout]).toEqual([
      0,
      '1 expired session removed (1 examined in 1 sweep call)\n',
    ]);
  });

  it('removes every expired session and leaves the live ones', async () => {
    const { url } = await sqliteWith(6, 25);
    const result = jsonOf(await runCli(['sweep', url, '--limit', '10', '--json']));
    expect(result).toMatchObject({ ok: true, removed: 25, done: true });
    expect(result.calls).toBeGreaterThanOrEqual(3);
    expect(jsonOf(await runCli(['stats', url, '--json']))).toMatchObject({
      live: 6,
      expiredNotSwept: 0,
    });
  });

  it('stops when --budget is spent and exits 5; the next run finishes', async () => {
    const { url } = await sqliteWith(1, 9);
    const first = await runCli(['sweep', url, '--budget', '0', '--limit', '2', '--json']);
    expect(first.code).toBe(5);
    expect(jsonOf(first)).toMatchObject({ done: false, removed: 2, calls: 1 });
    const second = await runCli(['sweep', url, '--json']);
    expect(second.code).toBe(0);
    expect(jsonOf(second)).toMatchObject({ done: true, removed: 7 });
  });

  it('refuses a malformed --budget', async () => {
    const { url } = await sqliteWith(1, 0);
    expect((await runCli(['sweep', url, '--budget', 'soon'])).code).toBe(2);
  });
});

describe('options that take a value', () => {
  it('one followed by another option instead of its value is refused, so --dry-run is never taken as a file name', async () => {
    const peer = nextDir();
    mkdirSync(peer);
    const cwd = nextDir();
    mkdirSync(cwd);
    const target = `${nextDir()}.db`;
    const args = ['import', '--from', `session-file-store:${peer}`, '--to', `sqlite:${target}`];
    const result = await runCli([...args, '--ledger', '--dry-run', '--json'], { cwd });
    expect(result.code).toBe(2);
    expect(jsonOf(result)).toMatchObject({
      error: { code: 'ERR_USAGE', message: expect.stringContaining("'--ledger <file>'") },
    });
    expect([existsSync(target), readdirSync(cwd)]).toEqual([false, []]);
  });

  it('one given twice with different values is refused, naming both, and nothing is copied', async () => {
    const first = await sqliteWith(1, 0);
    const second = await sqliteWith(1, 0);
    const target = `${nextDir()}.db`;
    const result = await runCli([
      'copy',
      '--from',
      first.url,
      '--from',
      second.url,
      '--to',
      `sqlite:${target}`,
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`--from is given twice ('${first.url}', '${second.url}')`);
    expect(existsSync(target)).toBe(false);
  });
});

describe('numbers in options', () => {
  it.each([
    ['--limit', '0x10'],
    ['--limit', '1e3'],
    ['--limit', '9007199254740993'],
    ['--budget', '2.5'],
    ['--budget', '99999999999999999999'],
    ['--concurrency', '1e1'],
    ['--ttl', '0x10'],
    ['--ttl', '1.5'],
    ['--ttl', '9007199254741'],
  ])('%s %s, not the whole number typed, is refused with exit 2', async (option, value) => {
    const { url } = await sqliteWith(1, 0);
    const peer = nextDir();
    mkdirSync(peer, { recursive: true });
    const target = `${nextDir()}.db`;
    const args =
      option === '--ttl'
        ? ['import', '--from', `session-file-store:${peer}`, '--to', `sqlite:${target}`]
        : option === '--concurrency'
          ? ['copy', '--from', url, '--to', `sqlite:${target}`]
          : ['sweep', url];
    const result = await runCli([...args, option, value, '--json']);
    expect(result.code, result.stdout).toBe(2);
    expect(jsonOf<{ error: { message: string } }>(result).error.message).toContain(
      `${option} must be from`,
    );
    expect(existsSync(target)).toBe(false);
  });
});

describe('copy', () => {
  it('copies every live session with its bytes and expiry, and a rerun writes nothing', async () => {
    const { url, live, expired } = await sqliteWith(30, 5);
    const target = nextDir();
    const first = await runCli(['copy', '--from', url, '--to', `level:${target}`, '--json']);
    expect(first.code).toBe(0);
    expect(jsonOf(first)).toMatchObject({ counts: { written: 30, present: 0 } });
    const again = jsonOf(
      await runCli(['copy', '--from', url, '--to', `level:${target}`, '--json']),
    );
    expect(again).toMatchObject({ counts: { written: 0, present: 30 } });

    const source = await SqliteStore.open({ path: url.slice('sqlite:'.length) });
    const copied = await LevelStore.open({ path: target });
    try {
      expect(await copied.count()).toBe(30);
      for (const id of live) expect(await copied.get(id)).toEqual(await source.get(id));
      for (const id of expired) expect(await copied.get(id)).toBeUndefined();
    } finally {
      await Promise.all([source.close(), copied.close()]);
    }
  });

  it.each([
    ['not a finite time', '9e999'],
    ['later than a Date can hold', '9e300'],
  ])(
    'skips a record whose expiry is %s (a hand edit) as unreadable, copies the rest, exit 5',
    async (_, expiry) => {
      const { url, live } = await sqliteWith(4, 0);
      const damaged = live[0] as string;
      const db = new Database(url.slice('sqlite:'.length));
      db.prepare(`UPDATE sessions SET expires_at = ${expiry} WHERE id = ?`).run(damaged);
      db.close();
      const target = nextDir();
      const result = await runCli(['copy', '--from', url, '--to', `level:${target}`, '--json']);
      expect(result.code, result.stderr).toBe(5);
      expect(jsonOf(result)).toMatchObject({ counts: { read: 3, written: 3, unreadable: 1 } });
      // stats shows an expiry past the Date range (see above); one at no finite time is corrupt.
      const stats = await runCli(['stats', url, '--json']);
      expect(stats.code, stats.stderr).toBe(expiry === '9e999' ? 5 : 0);
      expect(jsonOf(stats)).toMatchObject({ corrupt: expiry === '9e999' ? 1 : 0 });
      const copied = await LevelStore.open({ path: target });
      try {
        expect(await copied.count()).toBe(3);
        expect(await copied.get(damaged)).toBeUndefined();
      } finally {
        await copied.close();
      }
    },
  );

  it('a --ledger that is a directory, or in one that is not there, is refused saying which, and nothing is written', async () => {
    const { url } = await sqliteWith(2, 0);
    const dir = nextDir();
    mkdirSync(dir, { recursive: true });
    const targetPath = join(dir, 'target.db');
    for (const [ledger, problem] of [
      [dir, 'EISDIR, it is a directory; give a file'],
      [
        join(dir, 'missing', 'copy.ledger'),
        `ENOENT, its directory ${join(dir, 'missing')} does not exist`,
      ],
    ] as const) {
      const result = await runCli([
        'copy',
        '--from',
        url,
        '--to',
        `sqlite:${targetPath}`,
        '--ledger',
        ledger,
        '--json',
      ]);
      expect(result.code).toBe(1);
      expect(jsonOf(result)).toMatchObject({
        error: { code: 'ERR_STORE_IO', message: `--ledger ${ledger}: ${problem}` },
      });
      expect(existsSync(targetPath)).toBe(false);
    }
  });

  it('a --ledger that keeps nothing (/dev/null) or would block the run (a FIFO) is refused, and nothing is written', async () => {
    const { url } = await sqliteWith(2, 0);
    const dir = nextDir();
    mkdirSync(dir, { recursive: true });
    const fifo = join(dir, 'copy.ledger');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const targetPath = join(dir, 'target.db');
    for (const [ledger, kind] of [
      ['/dev/null', 'a character device'],
      [fifo, 'a FIFO'],
    ] as const) {
      for (const dryRun of [[], ['--dry-run']]) {
        const args = ['copy', '--from', url, '--to', `sqlite:${targetPath}`, '--ledger', ledger];
        const result = await runCli([...args, ...dryRun, '--json']);
        expect(result.code, ledger).toBe(1);
        expect(jsonOf(result)).toMatchObject({
          error: {
            code: 'ERR_STORE_IO',
            message: `--ledger ${ledger}: it is ${kind}, which keeps nothing; give a file`,
          },
        });
        expect(existsSync(targetPath)).toBe(false);
      }
    }
  });

  it('again after the switch with --ledger, a session logged out on the new store stays out, and new ones arrive', async () => {
    const { path, url, live } = await sqliteWith(3, 0);
    const targetPath = `${nextDir()}.db`;
    const ledger = `${nextDir()}.ledger`;
    const args = ['copy', '--from', url, '--to', `sqlite:${targetPath}`, '--ledger', ledger];
    const first = await runCli([...args, '--json']);
    expect(first.code, first.stderr).toBe(0);
    expect(jsonOf(first)).toMatchObject({ counts: { written: 3, inLedger: 0 } });
    // Between the two copies: a user logs out on the new store, another signs in on the old one.
    const loggedOut = live[0] as string;
    const target = await SqliteStore.open({ path: targetPath });
    await target.delete(loggedOut);
    const source = await SqliteStore.open({ path });
    const arrived = generateSessionId();
    await seed(source, [arrived], () => Date.now() + 3_600_000);
    await source.close();
    try {
      const second = await runCli([...args, '--json']);
      expect(second.code, second.stderr).toBe(0);
      // Every session on the source is read, those brought over before included.
      expect(jsonOf(second)).toMatchObject({
        counts: { read: 4, written: 1, present: 0, inLedger: 3, reconciled: { unchanged: 3 } },
      });
      expect(await target.get(loggedOut)).toBeUndefined();
      expect(await target.get(arrived)).toBeDefined();
      expect(await target.count()).toBe(3);
      const text = await runCli([...args, '--dry-run']);
      expect(text.stdout).toContain('4 read, 0 would write');
      expect(text.stdout).toContain(
        '4 brought over before (in --ledger); of those brought over before, 4 unchanged,',
      );
    } finally {
      await target.close();
    }
  });

  it('again with --ledger, a session that ended on the old store since is deleted from the target, one changed there is updated, and one the new app changed is kept', async () => {
    const { path, url, live } = await sqliteWith(5, 0);
    const [loggedOut, changed, untouched, usedOnTarget, revokedButUsed] = live as [
      string,
      string,
      string,
      string,
      string,
    ];
    const targetPath = nextDir();
    const ledger = `${nextDir()}.ledger`;
    const args = ['copy', '--from', url, '--to', `file:${targetPath}`, '--ledger', ledger];
    const first = await runCli([...args, '--json']);
    expect(first.code, first.stderr).toBe(0);
    expect(jsonOf(first)).toMatchObject({
      counts: { written: 5, reconciled: { deleted: 0, updated: 0, keptChanged: 0 } },
    });
    // After the first pass: on the old app one user logs out, one session is saved again, and
    // an admin revokes one; on the new app two users already make requests.
    const source = await SqliteStore.open({ path });
    const target = await FileStore.open({ path: targetPath });
    try {
      const newer = {
        data: new TextEncoder().encode('{"newer":1}'),
        expiresAt: Date.now() + 7_200_000,
      };
      const byNewApp = {
        data: new TextEncoder().encode('{"newApp":1}'),
        expiresAt: Date.now() + 5_400_000,
      };
      await source.delete(loggedOut);
      await source.set(changed, newer);
      await source.set(usedOnTarget, newer);
      await source.delete(revokedButUsed);
      await target.set(usedOnTarget, byNewApp);
      await target.set(revokedButUsed, byNewApp);
      const untouchedBefore = await target.get(untouched);
      const dryRun = await runCli([...args, '--dry-run', '--json']);
      expect(jsonOf(dryRun)).toMatchObject({
        counts: { reconciled: { deleted: 1, updated: 1, keptChanged: 2 } },
      });
      expect(await target.get(loggedOut)).toBeDefined();
      const second = await runCli([...args, '--json']);
      expect(second.code, second.stderr).toBe(0);
      expect(jsonOf(second)).toMatchObject({
        counts: { written: 0, inLedger: 3, reconciled: { deleted: 1, updated: 1, keptChanged: 2 } },
      });
      expect(await target.get(loggedOut)).toBeUndefined();
      expect(asText(await target.get(changed))).toEqual(asText(newer));
      expect(asText(await target.get(untouched))).toEqual(asText(untouchedBefore));
      expect(asText(await target.get(usedOnTarget))).toEqual(asText(byNewApp));
      expect(asText(await target.get(revokedButUsed))).toEqual(asText(byNewApp));
      // The update is recorded: a later change on the old store is carried again, once.
      const newest = {
        data: new TextEncoder().encode('{"newest":1}'),
        expiresAt: Date.now() + 7_200_000,
      };
      await source.set(changed, newest);
      const third = await runCli([...args]);
      expect(third.code, third.stderr).toBe(0);
      expect(third.stdout).toContain(
        '0 ended on the source (deleted), 1 changed there (updated), 2 changed on the target (kept)',
      );
      expect(asText(await target.get(changed))).toEqual(asText(newest));
      const fourth = await runCli([...args, '--json']);
      expect(jsonOf(fourth)).toMatchObject({
        counts: { reconciled: { deleted: 0, updated: 0, keptChanged: 2 } },
      });
    } finally {
      await source.close();
      await target.close();
    }
  });

  it('once more after the old app stopped, with --ledger, a change the old app made after the second run read it is carried to a session the new app only renewed since', async () => {
    const { path, url, live } = await sqliteWith(4, 0);
    const [changedRenewed, changedSaved, loggedOutRenewed, changedAlone] = live as [
      string,
      string,
      string,
      string,
    ];
    const targetPath = `${nextDir()}.db`;
    const ledger = `${nextDir()}.ledger`;
    const args = ['copy', '--from', url, '--to', `sqlite:${targetPath}`, '--ledger', ledger];
    // The first run while the old app serves, the second at the switch.
    for (const run of [1, 2]) {
      const result = await runCli(args);
      expect(result.code, `${run}: ${result.stderr}`).toBe(0);
    }
    const source = await SqliteStore.open({ path });
    const target = await SqliteStore.open({ path: targetPath });
    try {
      // After the second run read them: the old app, still draining, saves three sessions and
      // logs one out; the new app renews two (a read-only request: a touch) and saves one.
      const oldApp = (text: string) => ({
        data: new TextEncoder().encode(text),
        expiresAt: Date.now() + 3_000_000,
      });
      for (const id of [changedRenewed, changedSaved, changedAlone]) {
        await source.set(id, oldApp(`{"cart":"${id}"}`));
      }
      await source.delete(loggedOutRenewed);
      const renewedUntil = Date.now() + 5_000_000;
      await target.touch(changedRenewed, renewedUntil);
      await target.touch(loggedOutRenewed, renewedUntil);
      const byNewApp = { data: new TextEncoder().encode('{"newApp":1}'), expiresAt: renewedUntil };
      await target.set(changedSaved, byNewApp);
      // The old app has stopped: the last run.
      const last = await runCli([...args, '--json']);
      expect(last.code, last.stderr).toBe(0);
      expect(jsonOf(last)).toMatchObject({
        counts: { inLedger: 3, reconciled: { updated: 2, deleted: 0, keptChanged: 2 } },
      });
      // The old app's data, with the new app's later expiry.
      expect(asText(await target.get(changedRenewed))).toEqual({
        text: `{"cart":"${changedRenewed}"}`,
        expiresAt: renewedUntil,
      });
      expect(asText(await target.get(changedAlone))?.text).toBe(`{"cart":"${changedAlone}"}`);
      // Saved by the new app: its version wins. Renewed there: a user possibly still active.
      expect(asText(await target.get(changedSaved))).toEqual(asText(byNewApp));
      expect(await target.get(loggedOutRenewed)).toBeDefined();
      // Recorded as written: a later run finds nothing to do.
      const again = await runCli([...args, '--json']);
      expect(jsonOf(again)).toMatchObject({
        counts: { reconciled: { updated: 0, deleted: 0, keptChanged: 2 } },
      });
    } finally {
      await source.close();
      await target.close();
    }
  });

  it('again with a --ledger of ids alone, as runs before fingerprints wrote it, leaves those sessions as the target has them and reconciles the rest', async () => {
    const { path, url, live } = await sqliteWith(2, 0);
    const targetPath = `${nextDir()}.db`;
    const ledger = `${nextDir()}.ledger`;
    const args = ['copy', '--from', url, '--to', `sqlite:${targetPath}`, '--ledger', ledger];
    const first = await runCli(args);
    expect(first.code, first.stderr).toBe(0);
    const ids = readFileSync(ledger, 'utf8')
      .split('\n')
      .map((line) => line.split(' ')[0]);
    writeFileSync(ledger, ids.join('\n'));
    const source = await SqliteStore.open({ path });
    const arrived = generateSessionId();
    await seed(source, [arrived], () => Date.now() + 3_600_000);
    try {
      const second = await runCli([...args, '--json']);
      expect(jsonOf(second)).toMatchObject({ counts: { written: 1, inLedger: 2 } });
      for (const id of [live[0] as string, arrived]) await source.delete(id);
      const third = await runCli([...args, '--json']);
      expect(third.code, third.stderr).toBe(0);
      expect(jsonOf(third)).toMatchObject({
        counts: { inLedger: 1, reconciled: { deleted: 1, updated: 0, keptChanged: 0 } },
      });
    } finally {
      await source.close();
    }
    const target = await SqliteStore.open({ path: targetPath });
    try {
      expect(await target.get(live[0] as string)).toBeDefined();
      expect(await target.get(arrived)).toBeUndefined();
    } finally {
      await target.close();
    }
  });

  it('again with --ledger, a session ended on the old store that a request of the new app holds locked is left to that request', async () => {
    const { path, url, live } = await sqliteWith(1, 0);
    const id = live[0] as string;
    const targetPath = `${nextDir()}.db`;
    const ledger = `${nextDir()}.ledger`;
    const args = ['copy', '--from', url, '--to', `sqlite:${targetPath}`, '--ledger', ledger];
    expect((await runCli(args)).code).toBe(0);
    const source = await SqliteStore.open({ path });
    await source.delete(id);
    await source.close();
    const target = await SqliteStore.open({ path: targetPath });
    try {
      // The new app's request: holds the lock while the copy runs, then saves what it changed.
      const lock = await target.locks.acquire(id);
      const second = runCli([...args, '--json']);
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const saved = {
        data: new TextEncoder().encode('{"newApp":1}'),
        expiresAt: Date.now() + 3_600_000,
      };
      expect(await target.set(id, saved, { only: 'present', lock })).toBe(true);
      await lock.release();
      const result = await second;
      expect(result.code, result.stderr).toBe(0);
      expect(jsonOf(result)).toMatchObject({
        counts: { reconciled: { deleted: 0, updated: 0, keptChanged: 1 } },
      });
      expect(asText(await target.get(id))).toEqual(asText(saved));
    } finally {
      await target.close();
    }
  });

  it('again with --ledger, a session a request of the new app holds locked for the whole wait is left to it, and the run goes on', async () => {
    const { path, url, live } = await sqliteWith(2, 0);
    const [held, free] = live as [string, string];
    const targetPath = `${nextDir()}.db`;
    const ledger = `${nextDir()}.ledger`;
    const args = ['copy', '--from', url, '--to', `sqlite:${targetPath}`, '--ledger', ledger];
    expect((await runCli(args)).code).toBe(0);
    const source = await SqliteStore.open({ path });
    await source.delete(held);
    await source.delete(free);
    await source.close();
    const target = await SqliteStore.open({ path: targetPath });
    try {
      // Held past the copy's wait for it (10 s), as a stuck request of the new app would.
      const lock = await target.locks.acquire(held, { leaseMs: 60_000 });
      try {
        const result = await runCli([...args, '--json']);
        expect(result.code, result.stderr).toBe(0);
        expect(jsonOf(result)).toMatchObject({
          counts: { reconciled: { deleted: 1, updated: 0, keptChanged: 1 } },
        });
      } finally {
        await lock.release();
      }
      expect(await target.get(held)).toBeDefined();
      expect(await target.get(free)).toBeUndefined();
    } finally {
      await target.close();
    }
  }, 60_000);

  it('keeps what the target holds unless --overwrite', async () => {
    const { url, live } = await sqliteWith(4, 0);
    const targetPath = `${nextDir()}.db`;
    const target = await SqliteStore.open({ path: targetPath });
    const mine = { data: new TextEncoder().encode('{}'), expiresAt: Date.now() + 99_000 };
    await target.set(live[0] as string, mine);
    await target.close();
    const args = ['copy', '--from', url, '--to', `sqlite:${targetPath}`, '--json'];
    expect(jsonOf(await runCli(args))).toMatchObject({ counts: { written: 3, present: 1 } });
    const reopened = await SqliteStore.open({ path: targetPath });
    expect(await reopened.get(live[0] as string)).toEqual(mine);
    await reopened.close();
    expect(jsonOf(await runCli([...args, '--overwrite']))).toMatchObject({
      counts: { written: 4, present: 0 },
    });
    const after = await SqliteStore.open({ path: targetPath });
    expect(await after.get(live[0] as string)).not.toEqual(mine);
    await after.close();
  });

  it('--dry-run counts and writes nothing, and does not create the target', async () => {
    const { url } = await sqliteWith(7, 2);
    const target = nextDir();
    const result = await runCli([
      'copy',
      '--from',
      url,
      '--to',
      `file:${target}`,
      '--dry-run',
      '--json',
    ]);
    expect(jsonOf(result)).toMatchObject({ dryRun: true, counts: { written: 7 } });
    expect(existsSync(target)).toBe(false);
  });

  /** Where each path store's real run cannot make a store: a missing target, or one that is not a store. */
  const unmakeable: [string, string, (dir: string) => string][] = [
    ['file', 'inside a regular file', (dir) => `file:${join(dir, 'a-file', 'sessions')}`],
    ['file', 'that is a regular file', (dir) => `file:${join(dir, 'a-file')}`],
    ['file', 'that is a directory of other files', (dir) => `file:${join(dir, 'foreign')}`],
    ['level', 'inside a regular file', (dir) => `level:${join(dir, 'a-file', 'sessions')}`],
    ['level', 'that is a regular file', (dir) => `level:${join(dir, 'a-file')}`],
    ['level', 'that is a directory of other files', (dir) => `level:${join(dir, 'foreign')}`],
    ['sqlite', 'inside a regular file', (dir) => `sqlite:${join(dir, 'a-file', 'sessions.db')}`],
    ['dbm', 'inside a regular file', (dir) => `dbm:${join(dir, 'a-file', 'sessions.dbm')}`],
  ];

  it.each(unmakeable)(
    '--dry-run to a %s target %s, which the real run cannot make a store of, fails as the real run does and creates nothing',
    async (_kind, _where, targetIn) => {
      const { url } = await sqliteWith(2, 0);
      const dir = nextDir();
      // A regular file, and a directory of someone else's files.
      mkdirSync(join(dir, 'foreign'), { recursive: true });
      writeFileSync(join(dir, 'a-file'), 'not a directory');
      writeFileSync(join(dir, 'foreign', 'notes.txt'), 'mine');
      const target = targetIn(dir);
      const listing = () => [readdirSync(dir).sort(), readdirSync(join(dir, 'foreign'))];
      const before = listing();
      const dryRun = await runCli(['copy', '--from', url, '--to', target, '--dry-run', '--json']);
      expect([dryRun.code, jsonOf(dryRun)], dryRun.stderr).toMatchObject([
        1,
        { ok: false, error: { code: 'ERR_STORE_IO' } },
      ]);
      expect(jsonOf<{ error: { message: string } }>(dryRun).error.message).toContain(target);
      expect(listing()).toEqual(before);
      const real = await runCli(['copy', '--from', url, '--to', target, '--json']);
      expect([real.code, jsonOf(real)], real.stderr).toMatchObject([1, { ok: false }]);
    },
  );

  it.each([
    [
      'file',
      'in directories not made yet',
      (dir: string) => `file:${join(dir, 'new', 'sessions')}`,
    ],
    ['file', 'that is an empty directory', (dir: string) => `file:${join(dir, 'empty')}`],
    [
      'level',
      'in directories not made yet',
      (dir: string) => `level:${join(dir, 'new', 'sessions')}`,
    ],
    ['level', 'that is an empty directory', (dir: string) => `level:${join(dir, 'empty')}`],
    ['sqlite', 'not made yet', (dir: string) => `sqlite:${join(dir, 'sessions.db')}`],
    [
      'sqlite',
      'in directories not made yet',
      (dir: string) => `sqlite:${join(dir, 'new', 'sessions.db')}`,
    ],
    ['dbm', 'not made yet', (dir: string) => `dbm:${join(dir, 'sessions.dbm')}`],
    [
      'dbm',
      'in directories not made yet',
      (dir: string) => `dbm:${join(dir, 'new', 'sessions.dbm')}`,
    ],
  ])(
    '--dry-run to a %s target %s, which the real run makes, counts every session and creates nothing',
    async (_kind, _where, targetIn) => {
      const { url } = await sqliteWith(2, 0);
      const dir = nextDir();
      mkdirSync(join(dir, 'empty'), { recursive: true });
      const target = targetIn(dir);
      const dryRun = await runCli(['copy', '--from', url, '--to', target, '--dry-run', '--json']);
      expect([dryRun.code, jsonOf(dryRun)], dryRun.stderr).toMatchObject([
        0,
        { dryRun: true, counts: { written: 2 } },
      ]);
      expect(readdirSync(dir)).toEqual(['empty']);
      expect(readdirSync(join(dir, 'empty'))).toEqual([]);
    },
  );

  it('a copy to a level: store the running app holds says to stop the app, and then runs', async () => {
    const { url, live } = await sqliteWith(3, 0);
    const dir = nextDir();
    const app = await LevelStore.open({ path: dir });
    try {
      const busy = await runCli(['copy', '--from', url, '--to', `level:${dir}`, '--json']);
      expect(busy.code).toBe(1);
      expect(jsonOf(busy)).toMatchObject({ ok: false, error: { code: 'ERR_STORE_BUSY' } });
      expect(busy.stderr).toContain('Stop the app that holds it, then run the command again');
      expect(await app.count()).toBe(0);
    } finally {
      await app.close();
    }
    const copied = await runCli(['copy', '--from', url, '--to', `level:${dir}`, '--json']);
    expect(copied.code, copied.stderr).toBe(0);
    expect(jsonOf(copied)).toMatchObject({ counts: { written: live.length } });
  });

  it('a store that refuses to open is named, so a copy between two SQLite files says which', async () => {
    const { url } = await sqliteWith(3, 0);
    const foreign = `${nextDir()}.db`;
    const db = new Database(foreign);
    db.exec('CREATE TABLE sessions (sid PRIMARY KEY, expired, sess)');
    db.close();
    for (const args of [
      ['--from', url, '--to', `sqlite:${foreign}`],
      ['--from', `sqlite:${foreign}`, '--to', url],
    ]) {
      const result = await runCli(['copy', ...args, '--json']);
      expect(result.code).toBe(1);
      expect(jsonOf<{ error: { message: string } }>(result).error.message).toContain(
        `sqlite:${foreign}: Refusing`,
      );
    }
  });

  it("a target its store refuses ends the copy before the source is opened, in the store's words", async () => {
    const mine = nextDir();
    mkdirSync(join(mine, 'a'), { recursive: true });
    // A source that is not there: the target's refusal comes first all the same.
    const missing = `${nextDir()}.db`;
    for (const dryRun of [false, true]) {
      const result = await runCli([
        'copy',
        '--from',
        `sqlite:${missing}`,
        '--to',
        `file:${mine}`,
        ...(dryRun ? ['--dry-run'] : []),
      ]);
      expect(result.code, result.stderr).toBe(1);
      expect(result.stderr).toContain(
        `file:${mine}: ${dryRun ? 'cannot make a store there: ' : ''}${mine} holds other files (a) and is not a file store`,
      );
    }
    expect(readdirSync(mine)).toEqual(['a']);
  });

  it('refuses to copy a store onto itself, however its path is spelt', async () => {
    const { url, path } = await sqliteWith(1, 0);
    const linked = join(nextDir(), 'link');
    mkdirSync(dirname(linked), { recursive: true });
    symlinkSync(dirname(path), linked);
    for (const other of [url, `sqlite:${join(linked, basename(path))}`]) {
      const result = await runCli(['copy', '--from', url, '--to', other, '--overwrite']);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain('same store');
    }
  });
});

describe('--max-record-bytes', () => {
  const limit = 4 * 1024 * 1024;
  const big = 2 * 1024 * 1024;

  /** A store opened with a 4 MiB limit, holding one 2 MiB record and `small` small ones. */
  async function storeWithBigRecord(open: (path: string) => Promise<SessionStore>, path: string) {
    const store = await open(path);
    const expiresAt = Date.now() + 3_600_000;
    const bigId = generateSessionId();
    const smallIds = Array.from({ length: 5 }, () => generateSessionId());
    await store.set(bigId, { data: new Uint8Array(big).fill(7), expiresAt });
    for (const id of smallIds) await store.set(id, { data: new Uint8Array(100), expiresAt });
    await store.close();
    return { bigId, smallIds };
  }

  it('copies and inspects records over the default 1 MiB limit', async () => {
    const source = `${nextDir()}.db`;
    const { bigId } = await storeWithBigRecord(
      (path) => SqliteStore.open({ path, maxRecordBytes: limit }),
      source,
    );
    const target = nextDir();
    const args = ['--from', `sqlite:${source}`, '--to', `level:${target}`, '--json'];
    const copied = await runCli(['copy', ...args, '--max-record-bytes', String(limit)]);
    expect(copied.code, copied.stderr).toBe(0);
    expect(jsonOf(copied)).toMatchObject({ counts: { read: 6, written: 6, unreadable: 0 } });
    const stats = await runCli(['stats', `level:${target}`, '--max-record-bytes', `${limit}`]);
    expect(stats.code, stats.stderr).toBe(0);
    expect(stats.stdout).toMatch(/^too large records +0$/m);
    const level = await LevelStore.open({ path: target, maxRecordBytes: limit });
    try {
      expect((await level.get(bigId))?.data.byteLength).toBe(big);
    } finally {
      await level.close();
    }
  });

  it.each([
    ['file', (path: string) => FileStore.open({ path, maxRecordBytes: limit })],
    ['sqlite', (path: string) => SqliteStore.open({ path, maxRecordBytes: limit })],
  ] as const)(
    'without it, a record over the limit in a %s store is reported and skipped, the rest copied, exit 5',
    async (scheme, open) => {
      const source = scheme === 'sqlite' ? `${nextDir()}.db` : nextDir();
      const { bigId, smallIds } = await storeWithBigRecord(open, source);
      const stats = await runCli(['stats', `${scheme}:${source}`, '--json']);
      expect(stats.code).toBe(5);
      expect(jsonOf(stats)).toMatchObject({ live: 6, corrupt: 0, tooLarge: 1, payloadBytes: 500 });

      const target = nextDir();
      const copied = await runCli([
        'copy',
        '--from',
        `${scheme}:${source}`,
        '--to',
        `level:${target}`,
      ]);
      expect(copied.code).toBe(5);
      expect(copied.stdout).toContain('5 written');
      expect(copied.stdout).toContain('1 unreadable');
      expect(copied.stderr).toContain('skipped 1 record over 1048576 bytes; --max-record-bytes');
      const level = await LevelStore.open({ path: target });
      try {
        expect(await level.get(bigId)).toBeUndefined();
        for (const id of smallIds) expect(await level.get(id)).toBeDefined();
      } finally {
        await level.close();
      }
    },
  );

  it('a session the target refuses as too large ends the import with the option named', async () => {
    const peer = nextDir();
    mkdirSync(peer, { recursive: true });
    const expires = new Date(Date.now() + 3_600_000).toISOString();
    const session = {
      cookie: { originalMaxAge: 3_600_000, expires },
      pad: 'p'.repeat(big),
      __lastAccess: Date.now(),
    };
    const id = generateSessionId();
    writeFileSync(join(peer, `${id}.json`), JSON.stringify(session));
    const result = await runCli([
      'import',
      '--from',
      `session-file-store:${peer}`,
      '--to',
      `level:${nextDir()}`,
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('--max-record-bytes raises the limit');
    // Which session, masked as every report masks ids, so it can be found in the peer.
    expect(result.stderr).toContain(`Session ${id.slice(0, 4)}… (${id.length} characters)`);
    expect(result.stderr).not.toContain(id);
  });

  it('an import ended by a too-large session reports what it had written, which stays written', async () => {
    const peer = nextDir();
    mkdirSync(peer, { recursive: true });
    const expires = new Date(Date.now() + 3_600_000).toISOString();
    const cookie = { originalMaxAge: 3_600_000, expires };
    const bigId = generateSessionId();
    const smallIds = Array.from({ length: 5 }, () => generateSessionId());
    writeFileSync(join(peer, `${bigId}.json`), JSON.stringify({ cookie, pad: 'p'.repeat(big) }));
    for (const id of smallIds) {
      writeFileSync(join(peer, `${id}.json`), JSON.stringify({ cookie, user: 'ann' }));
    }
    const target = nextDir();
    const args = ['import', '--from', `session-file-store:${peer}`, '--to', `level:${target}`];
    const storedSmall = async () => {
      const level = await LevelStore.open({ path: target });
      try {
        expect(await level.get(bigId)).toBeUndefined();
        const found = await Promise.all(smallIds.map((id) => level.get(id)));
        return found.filter((record) => record !== undefined).length;
      } finally {
        await level.close();
      }
    };
    // How far the import gets before the big session ends it depends on the peer's file order;
    // whatever it reached, the counts must say so and the target must hold what they count.
    const json = await runCli([...args, '--json']);
    expect(json.code).toBe(1);
    const report = JSON.parse(json.stdout);
    expect(report).toMatchObject({
      ok: false,
      stopped: true,
      counts: { present: 0, expired: 0, unreadable: 0 },
      error: { code: 'ERR_RECORD_TOO_LARGE', exitCode: 1 },
    });
    expect(report.error.message).toContain(`Session ${bigId.slice(0, 4)}…`);
    expect(report.counts.read, 'every session read was written, but the big one').toBe(
      report.counts.written + 1,
    );
    expect(await storedSmall()).toBe(report.counts.written);

    // Run again: what it wrote stays, and the text says how far this run got.
    const text = await runCli(args);
    expect(text.code).toBe(1);
    const line = /^stopped: (\d+) read, (\d+) written, (\d+) already present/m.exec(text.stdout);
    expect(line, text.stdout).not.toBeNull();
    const [read, written, present] = (line as RegExpExecArray).slice(1).map(Number);
    expect(read).toBe((written as number) + (present as number) + 1);
    expect(await storedSmall()).toBe(report.counts.written + (written as number));
  });

  it.each(['0', '-1', '1.5', 'lots', ''])('refuses %j with exit 2', async (value) => {
    const { url } = await sqliteWith(1, 0);
    const result = await runCli(['stats', url, '--max-record-bytes', value, '--json']);
    expect(result.code).toBe(2);
    expect(jsonOf(result)).toMatchObject({ ok: false, error: { code: 'ERR_USAGE' } });
  });

  it('is offered by every command that opens a store', async () => {
    for (const command of ['stats', 'ls', 'show', 'sweep', 'copy', 'import']) {
      expect((await runCli([command, '--help'])).stdout).toContain('--max-record-bytes <n>');
    }
  });
});
