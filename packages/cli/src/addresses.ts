import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { SessionStore } from '@sessile/core';
import { CliError, EXIT, usageError } from './exit-codes.js';
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
}

const PATH_STORES: Record<PathScheme, { packageName: string; className: string }> = {
  sqlite: { packageName: '@sessile/sqlite', className: 'SqliteStore' },
  level: { packageName: '@sessile/level', className: 'LevelStore' },
  file: { packageName: '@sessile/file', className: 'FileStore' },
  dbm: { packageName: '@sessile/dbm', className: 'DbmStore' },
};

export const STORE_SCHEMES =
  'sqlite:PATH, level:DIR, file:DIR, dbm:PATH, redis://HOST[:PORT][/DB][?prefix=P], postgres://USER@HOST[:PORT]/DB[?schema=S&table=T]';

/** `scheme:rest` split once; the scheme is lower-cased. */
export function splitScheme(text: string): { scheme: string; rest: string } | undefined {
  const match = /^([A-Za-z][A-Za-z0-9+.-]*):(.*)$/s.exec(text);
  if (match === null) return undefined;
  return { scheme: (match[1] as string).toLowerCase(), rest: match[2] as string };
}

/** A path from `scheme:PATH` or `scheme:///abs/path`, absolute. */
export function pathOf(rest: string, address: string): string {
  const path = rest.startsWith('//') ? rest.slice(2) : rest;
  if (path === '') throw usageError(`${address}: the address names no path`);
  return resolve(path);
}

/** A server URL with its password hidden, for output. */
export function hidePassword(url: URL): string {
  if (url.password === '') return url.href;
  const copy = new URL(url.href);
  copy.password = '***';
  return copy.href;
}

function parseServerUrl(text: string): URL {
  try {
    return new URL(text);
  } catch {
    throw usageError(`${text}: not a valid URL`);
  }
}

/** Parses a store address such as `sqlite:./sessions.db` or `redis://127.0.0.1:6379?prefix=app:`. */
export function parseStoreAddress(text: string): StoreAddress {
  const split = splitScheme(text);
  if (split === undefined) {
    throw usageError(`${text}: not a store address. Use one of ${STORE_SCHEMES}`);
  }
  const { scheme, rest } = split;
  if (scheme in PATH_STORES) {
    const path = pathOf(rest, text);
    const known = PATH_STORES[scheme as PathScheme];
    return { scheme: scheme as PathScheme, ...known, options: { path }, path, display: text };
  }
  if (scheme === 'redis' || scheme === 'rediss') {
    const url = parseServerUrl(text);
    const options: Record<string, unknown> = {};
    const prefix = url.searchParams.get('prefix');
    if (prefix !== null) options.prefix = prefix;
    for (const key of url.searchParams.keys()) {
      if (key !== 'prefix') throw usageError(`${text}: unknown parameter '${key}' (known: prefix)`);
    }
    url.search = '';
    options.url = url.href;
    return {
      scheme: 'redis',
      packageName: '@sessile/redis',
      className: 'RedisStore',
      options,
      display: hidePassword(url),
    };
  }
  if (scheme === 'postgres' || scheme === 'postgresql') {
    const url = parseServerUrl(text);
    const options: Record<string, unknown> = {};
    for (const [key, value] of url.searchParams) {
      if (key === 'schema' || key === 'table') options[key] = value;
      else throw usageError(`${text}: unknown parameter '${key}' (known: schema, table)`);
    }
    url.search = '';
    options.connectionString = url.href;
    return {
      scheme: 'postgres',
      packageName: '@sessile/postgres',
      className: 'PostgresStore',
      options,
      display: hidePassword(url),
    };
  }
  throw usageError(`${text}: unknown store '${scheme}:'. Use one of ${STORE_SCHEMES}`);
}

type StoreClass = { open(options: Record<string, unknown>): Promise<SessionStore> };

/** How the CLI opens a store, beyond what its address says. */
export interface OpenOptions {
  /** A path store that is not there is an error instead of a new, empty store. */
  mustExist: boolean;
  /** The store's `maxRecordBytes`; unset keeps its default. */
  maxRecordBytes?: number | undefined;
}

/** Opens the store an address names, through its package found by dynamic import. */
export async function openStore(
  address: StoreAddress,
  { mustExist, maxRecordBytes }: OpenOptions,
): Promise<SessionStore> {
  const module = await importPackage<Record<string, unknown>>(
    address.packageName,
    `The ${address.scheme}: store`,
  );
  const Store = module[address.className] as StoreClass | undefined;
  if (typeof Store?.open !== 'function') {
    throw new CliError(
      `${address.packageName} has no ${address.className}.open(); install a matching version`,
      EXIT.missingPackage,
      'ERR_PACKAGE_MISSING',
    );
  }
  if (mustExist && address.path !== undefined) {
    try {
      await stat(address.path);
    } catch (error) {
      throw new CliError(
        `${address.display}: no store at ${address.path} (${(error as NodeJS.ErrnoException).code ?? 'unreadable'})`,
        EXIT.failure,
        'ERR_STORE_IO',
        { cause: error },
      );
    }
  }
  return Store.open(
    maxRecordBytes === undefined ? address.options : { ...address.options, maxRecordBytes },
  );
}
