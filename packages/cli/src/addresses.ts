import { lookup } from 'node:dns/promises';
import { realpathSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { isSessionError, type SessionStore, type StoreProbe } from '@sessile/core';
import { CliError, EXIT, usageError } from './exit-codes.js';
import { toCliError } from './output.js';
import { sqlitePeerOf } from './peers/sqlite.js';
import { importPackage } from './resolve.js';

type PathScheme = 'sqlite' | 'level' | 'file' | 'dbm';
type ServerScheme = 'redis' | 'postgres';

/** A parsed store address: which package opens it, and the options its `open()` gets. */
export interface StoreAddress {
  scheme: PathScheme | ServerScheme;
  packageName: string;
  className: string;
  /** The options for `<Class>.open()`. */
  options: Record<string, unknown>;
  /** The file or directory of a path store, absolute. */
  path?: string;
  /** The address as shown in output, with any password hidden. */
  display: string;
  /** What tells this store from others on its server (or the path), defaults filled in. */
  identity: string;
  /** The host of a server store, compared by address since one server has many names. */
  host?: string;
  /** `host:port` of a server store, as the store's own messages name it. */
  server?: string;
}

const PATH_STORES: Record<PathScheme, { packageName: string; className: string }> = {
  sqlite: { packageName: '@sessile/sqlite', className: 'SqliteStore' },
  level: { packageName: '@sessile/level', className: 'LevelStore' },
  file: { packageName: '@sessile/file', className: 'FileStore' },
  dbm: { packageName: '@sessile/dbm', className: 'DbmStore' },
};

/** The prefix RedisStore uses when the address gives none. */
const REDIS_DEFAULT_PREFIX = 'sessile:';

export const STORE_SCHEMES =
  'sqlite:PATH, level:DIR, file:DIR, dbm:PATH, redis://HOST[:PORT][/DB][?prefix=P], postgres://USER@HOST[:PORT]/DB[?schema=S&table=T]';

/** `scheme:rest` split once; the scheme is lower-cased. */
export function splitScheme(text: string): { scheme: string; rest: string } | undefined {
  const match = /^([A-Za-z][A-Za-z0-9+.-]*):(.*)$/s.exec(text);
  if (match === null) return undefined;
  return { scheme: (match[1] as string).toLowerCase(), rest: match[2] as string };
}

/** A path from `scheme:PATH` or `scheme:///abs/path`, absolute; `~/` is the home directory. */
export function pathOf(rest: string, address: string): string {
  const path = rest.startsWith('//') ? rest.slice(2) : rest;
  if (path === '') throw usageError(`${address}: the address names no path`);
  // The shell expands `~` only at the start of a word, never after `sqlite:`.
  if (path === '~' || path.startsWith('~/')) return resolve(homedir(), path.slice(2));
  return resolve(path);
}

/**
 * `path` with symbolic links resolved, so that two spellings of one store (through a linked
 * directory, say) compare equal; for a path not there yet, its directory's.
 */
export function canonicalPath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    try {
      return join(realpathSync(dirname(path)), basename(path));
    } catch {
      return path;
    }
  }
}

/** A `password` parameter, which PostgreSQL connection strings take as well as the user's. */
const PASSWORD_PARAMETER = /([?&]password=)[^&#]*/gi;

/** A server URL with its passwords hidden, for output: the user's, and a `password` parameter. */
export function hidePassword(url: URL): string {
  let href = url.href;
  if (url.password !== '') {
    const copy = new URL(url.href);
    copy.password = '***';
    href = copy.href;
  }
  return href.replace(PASSWORD_PARAMETER, '$1***');
}

/** Text that may hold a server URL, for messages, with any password in it hidden. */
export function hidePasswordIn(text: string): string {
  const server = /[A-Za-z][A-Za-z0-9+.-]*:\/\//.exec(text);
  if (server === null) return text;
  const before = text.slice(0, server.index);
  const rest = text.slice(server.index);
  if (URL.canParse(rest)) {
    const url = new URL(rest);
    const hidden = hidePassword(url);
    return hidden === url.href ? text : before + hidden;
  }
  // It does not parse, so hide from the user name's `:` to the last `@`, to be sure.
  return (
    before +
    rest.replace(/^([^/]*\/\/[^:/?#@]*:).*@/s, '$1***@').replace(PASSWORD_PARAMETER, '$1***')
  );
}

export function parseServerUrl(text: string, address = text): URL {
  try {
    return new URL(text);
  } catch {
    throw usageError(`${hidePasswordIn(address)}: not a valid URL`);
  }
}

/**
 * A Redis server URL, `address` being the whole address it came from, for messages: `redis:/host:6379`
 * parses as a URL with no host and that path, which the client refuses later with a message naming nothing.
 */
export function parseRedisUrl(text: string, address = text): URL {
  const url = parseServerUrl(text, address);
  if (url.host === '' || !/^(\/\d*)?$/.test(url.pathname)) {
    const scheme = url.protocol.slice(0, -1);
    throw usageError(
      `${hidePasswordIn(address)}: not a Redis server address; write ${scheme}://host:port or ${scheme}://host:port/db`,
    );
  }
  return url;
}

/**
 * A server address's parameters, each one of `known` and given once: a second `?prefix=` would
 * leave which one the store opens to the reader.
 */
function storeParameters(url: URL, known: readonly string[]): Record<string, string> {
  const parameters: Record<string, string> = {};
  for (const [key, value] of url.searchParams) {
    if (!known.includes(key)) {
      throw usageError(
        `${hidePassword(url)}: unknown parameter '${key}' (known: ${known.join(', ')})`,
      );
    }
    if (Object.hasOwn(parameters, key)) {
      throw usageError(`${hidePassword(url)}: parameter '${key}' is given twice`);
    }
    parameters[key] = value;
  }
  return parameters;
}

/**
 * The libpq connection parameters a `postgres://` store address passes to the driver as they are
 * (node-postgres reads them from the connection string): a managed server that requires TLS is
 * reached with `?sslmode=require` (or `verify-full` and a `sslrootcert`).
 */
const POSTGRES_CONNECTION_PARAMETERS: readonly string[] = [
  'sslmode',
  'sslrootcert',
  'sslcert',
  'sslkey',
  'application_name',
];

/** A percent-encoded part of a server address, decoded; one that is not is a usage error naming it. */
function decodedOrRefused(part: string, url: URL): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw usageError(`${hidePassword(url)}: '${part}' is not percent-encoded (write % as %25)`);
  }
}

/** Parses a store address such as `sqlite:./sessions.db` or `redis://127.0.0.1:6379?prefix=app:`. */
export function parseStoreAddress(text: string): StoreAddress {
  const split = splitScheme(text);
  if (split === undefined) {
    throw usageError(`${hidePasswordIn(text)}: not a store address. Use one of ${STORE_SCHEMES}`);
  }
  const { scheme, rest } = split;
  if (scheme in PATH_STORES) {
    const path = pathOf(rest, text);
    const known = PATH_STORES[scheme as PathScheme];
    return {
      scheme: scheme as PathScheme,
      ...known,
      options: { path },
      path,
      display: text,
      identity: canonicalPath(path),
    };
  }
  if (scheme === 'redis' || scheme === 'rediss') {
    const url = parseRedisUrl(text);
    const options: Record<string, unknown> = storeParameters(url, ['prefix']);
    const prefix = options.prefix as string | undefined;
    // Shown with its prefix: two prefixes on one server are two stores.
    const display = hidePassword(url);
    url.search = '';
    options.url = url.href;
    return {
      scheme: 'redis',
      packageName: '@sessile/redis',
      className: 'RedisStore',
      options,
      display,
      ...redisPlace(url, prefix ?? REDIS_DEFAULT_PREFIX),
      server: `${url.hostname}:${url.port || 6379}`,
    };
  }
  if (scheme === 'postgres' || scheme === 'postgresql') {
    const url = parseServerUrl(text);
    const given = storeParameters(url, ['schema', 'table', ...POSTGRES_CONNECTION_PARAMETERS]);
    // Shown with its schema and table: two tables in one database are two stores.
    const display = hidePassword(url);
    const options: Record<string, unknown> = {};
    const connection = new URLSearchParams();
    for (const [key, value] of Object.entries(given)) {
      if (POSTGRES_CONNECTION_PARAMETERS.includes(key)) connection.set(key, value);
      else options[key] = value;
    }
    url.search = connection.toString();
    options.connectionString = url.href;
    // A schema or table name PostgresStore refuses is a TypeError from its own `probe` or
    // `open` (exit 2, a bad argument), which every command calls before it reads a record.
    const schema = (options.schema as string | undefined) ?? 'public';
    const table = (options.table as string | undefined) ?? 'sessions';
    return {
      scheme: 'postgres',
      packageName: '@sessile/postgres',
      className: 'PostgresStore',
      options,
      display,
      ...postgresPlace(url, schema, table),
      server: `${url.hostname}:${url.port || 5432}`,
    };
  }
  throw usageError(
    `${hidePasswordIn(text)}: unknown store '${scheme}:'${importInstead(scheme, text)}. Use one of ${STORE_SCHEMES}`,
  );
}

/** The schemes of the peers `import` reads, which an outsider may give to another command. */
const PEER_SCHEMES = [
  'session-file-store',
  'level-session-store',
  'connect-sqlite3',
  'better-sqlite3-session-store',
  'connect-redis',
  'connect-pg-simple',
];

/** For a peer's address given where a store's is wanted, the import that reads it. */
function importInstead(scheme: string, text: string): string {
  if (!PEER_SCHEMES.includes(scheme)) return '';
  return `. ${scheme}: is a peer store: sessile import --from ${hidePasswordIn(text)} --to URL reads it`;
}

/** Where a store or a peer keeps its data, as `sameStore` compares it. */
export type StorePlace = Pick<StoreAddress, 'identity' | 'host'>;

/** The keys under `prefix` in the database a Redis URL selects. */
export function redisPlace(url: URL, prefix: string): StorePlace {
  // `/01` selects database 1, as `/1` does.
  const db = Number(url.pathname.slice(1) || '0');
  return { identity: `redis:${url.port || 6379}/${db}?prefix=${prefix}`, host: url.hostname };
}

/** The table `schema.table` in the database a PostgreSQL URL names. */
export function postgresPlace(url: URL, schema: string, table: string): StorePlace {
  // PostgreSQL's default database is the user's name.
  const database = decodedOrRefused(url.pathname.slice(1) || url.username, url);
  return {
    identity: `postgres:${url.port || 5432}/${database}?schema=${schema}&table=${table}`,
    host: url.hostname,
  };
}

/** 127.0.0.0/8, ::1 and IPv4-mapped loopback: one server listening on both reaches itself. */
const LOOPBACK = /^(?:127\.\d+\.\d+\.\d+|::1|::ffff:127\.\d+\.\d+\.\d+)$/i;

/**
 * The IP addresses a host name stands for, or the name itself when it does not resolve; every
 * loopback address is one, as a server on this machine usually listens on both 127.0.0.1 and
 * ::1, and either way it is this machine.
 */
async function addressesOf(host: string): Promise<string[]> {
  const name = host.replace(/^\[(.*)\]$/, '$1');
  let addresses: string[];
  try {
    addresses = (await lookup(name, { all: true })).map((entry) => entry.address);
  } catch {
    addresses = [name];
  }
  return addresses.map((address) => (LOOPBACK.test(address) ? 'loopback' : address));
}

/** Whether two addresses name one store, however differently they spell it. */
export async function sameStore(a: StorePlace, b: StorePlace): Promise<boolean> {
  if (a.identity !== b.identity) return false;
  if (a.host === undefined || b.host === undefined || a.host === b.host) return true;
  const [first, second] = await Promise.all([addressesOf(a.host), addressesOf(b.host)]);
  return first.some((address) => second.includes(address));
}

type StoreClass = {
  open(options: Record<string, unknown>): Promise<SessionStore>;
  probe?(options: Record<string, unknown>): Promise<StoreProbe>;
};

/** How the CLI opens a store, beyond what its address says. */
export interface OpenOptions {
  /** A store that is not there (a path, a PostgreSQL table) is an error instead of a new, empty store. */
  mustExist: boolean;
  /** The store's `maxRecordBytes`; unset keeps its default. */
  maxRecordBytes?: number | undefined;
}

/** The class that opens the store an address names, from its package found by dynamic import. */
async function storeClass(address: StoreAddress): Promise<StoreClass> {
  const module = await importPackage<Record<string, unknown>>(
    address.packageName,
    `The ${address.scheme}: store`,
  );
  const Store = module[address.className] as StoreClass | undefined;
  if (typeof Store?.open !== 'function') throw olderPackage(address, 'open');
  return Store;
}

function olderPackage(address: StoreAddress, method: string): CliError {
  return new CliError(
    `${address.packageName} has no ${address.className}.${method}(); install a matching version`,
    EXIT.missingPackage,
    'ERR_PACKAGE_MISSING',
  );
}

/**
 * What the store's own `probe()` finds at the address, creating nothing. A Redis store is always
 * there: a prefix without keys is an empty store, and opening one creates nothing.
 */
export async function probeStore(address: StoreAddress): Promise<StoreProbe> {
  return probeWith(await storeClass(address), address);
}

async function probeWith(Store: StoreClass, address: StoreAddress): Promise<StoreProbe> {
  if (address.scheme === 'redis') return { state: 'present' };
  if (typeof Store.probe !== 'function') throw olderPackage(address, 'probe');
  try {
    return await Store.probe(address.options);
  } catch (error) {
    throw namingStore(error, address);
  }
}

/**
 * Where `import` reads what a store refuses as another program's database: LevelStore refuses
 * level-session-store's directory with `ERR_UNSUPPORTED` (as it does a newer format, where the
 * hint's "if" holds), and the CLI reads it as a peer. Keyed on the code, never the wording.
 */
function peerHint(address: StoreAddress, refusal: unknown): string {
  if (address.scheme === 'sqlite' && isSessionError(refusal, 'ERR_UNSUPPORTED')) {
    // SqliteStore refuses a table of another shape; the CLI reads whose shape it has.
    const peer = sqlitePeerOf(address.path as string);
    if (peer === undefined) return '';
    return `. Its sessions table is ${peer}'s: import its sessions: sessile import --from ${peer}:${address.path} --to <another store>`;
  }
  if (address.scheme !== 'level') return '';
  // A directory the running app holds: LevelDB lets one process open it at a time.
  if (isSessionError(refusal, 'ERR_STORE_BUSY')) {
    return '. Stop the app that holds it, then run the command again';
  }
  if (!isSessionError(refusal, 'ERR_UNSUPPORTED')) return '';
  return `. If it is level-session-store's, import its sessions: sessile import --from level-session-store:${address.path} --to <another store>`;
}

/** The error for a store that `probe` did not find, saying what is there; `what` leads the reason. */
function notThere(address: StoreAddress, probe: StoreProbe, what?: string): CliError | undefined {
  if (probe.state === 'present') return undefined;
  const found = `${probe.reason}${probe.state === 'refused' ? peerHint(address, probe.cause) : ''}`;
  const reason = what === undefined ? found : `${what}: ${found}`;
  return new CliError(`${address.display}: ${reason}`, EXIT.failure, 'ERR_STORE_IO', {
    cause: probe.state === 'refused' ? probe.cause : undefined,
  });
}

/**
 * Refuses a target that `probe` says `open()` cannot make a store of or open (a path inside a
 * file, a directory of other files, a table of another shape, no right to create a table). A dry
 * run, which checks this in place of that open, says what the real run would meet; the real run
 * says it in the store's own words, as its open would, before a record is read.
 */
export function assertCreatable(address: StoreAddress, probe: StoreProbe, dryRun: boolean): void {
  if (probe.state !== 'refused') return;
  throw notThere(address, probe, dryRun ? 'cannot make a store there' : undefined);
}

/** Opens the store an address names, through its package found by dynamic import. */
export async function openStore(
  address: StoreAddress,
  { mustExist, maxRecordBytes }: OpenOptions,
): Promise<SessionStore> {
  const Store = await storeClass(address);
  // A store that is not there is refused, so a command that only reads one never creates it.
  if (mustExist) {
    // Where `open` would refuse the place, the reason says why; where it would make a store, none is there.
    const probe = await probeWith(Store, address);
    const missing = notThere(
      address,
      probe,
      probe.state === 'absent' ? 'no store there' : undefined,
    );
    if (missing !== undefined) throw missing;
  }
  try {
    return await Store.open(
      maxRecordBytes === undefined ? address.options : { ...address.options, maxRecordBytes },
    );
  } catch (error) {
    throw namingStore(error, address);
  }
}

/**
 * A store's refusal to open, naming the store when its message does not: `copy` opens two, and
 * "Refusing to use the database" must say which.
 */
function namingStore(error: unknown, address: StoreAddress): CliError {
  const failure = toCliError(error);
  const named = [address.display, address.path, address.server].some(
    (name) => name !== undefined && failure.message.includes(name),
  );
  const hint = peerHint(address, error);
  if (named && hint === '') return failure;
  const message = `${named ? '' : `${address.display}: `}${failure.message}${hint}`;
  return new CliError(message, failure.exitCode, failure.code, { cause: error });
}
