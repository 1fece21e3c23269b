import { createRequire } from 'node:module';
import { CliError, EXIT } from './exit-codes.js';

const require = createRequire(import.meta.url);

function isNotFound(error: unknown, name: string): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return (
    (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') &&
    typeof message === 'string' &&
    message.includes(name)
  );
}

/** Imports an installed package; a missing one is a clean error that says what to install. */
export async function importPackage<T>(name: string, purpose: string): Promise<T> {
  try {
    return (await import(name)) as T;
  } catch (error) {
    if (isNotFound(error, name)) {
      throw new CliError(
        `${purpose} needs ${name}, which is not installed. Install it: npm install ${name}`,
        EXIT.missingPackage,
        'ERR_PACKAGE_MISSING',
        { cause: error },
      );
    }
    throw error;
  }
}

/**
 * Loads a driver (better-sqlite3, redis, pg) from wherever it is installed: beside the CLI, or
 * as the dependency of the sessile store package that brings it, so reading a peer's data never
 * needs the peer package itself.
 */
export function requireDriver<T>(name: string, via: readonly string[], purpose: string): T {
  try {
    return require(name) as T;
  } catch (error) {
    if (!isNotFound(error, name)) throw error;
  }
  for (const owner of via) {
    let ownerPath: string;
    try {
      ownerPath = require.resolve(`${owner}/package.json`);
    } catch {
      continue;
    }
    try {
      return createRequire(ownerPath)(name) as T;
    } catch (error) {
      if (!isNotFound(error, name)) throw error;
    }
  }
  const install = via[0] ?? name;
  throw new CliError(
    `${purpose} needs the ${name} driver, which is not installed. Install it: npm install ${install}`,
    EXIT.missingPackage,
    'ERR_PACKAGE_MISSING',
  );
}
