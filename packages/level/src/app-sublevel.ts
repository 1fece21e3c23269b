import { SessionError } from '@sessile/core';
import type { AbstractLevel } from 'abstract-level';
import { describeError } from './level-handle.js';

/** An abstract-level database or sublevel with any key and value types. */
// biome-ignore lint/suspicious/noExplicitAny: the app's database may use any encodings.
export type AnyLevel = AbstractLevel<any, any, any>;

/** The store's sublevel `name` of the app's `db`; a name abstract-level refuses is a TypeError. */
export function sublevelOf(db: AnyLevel, name: string): AnyLevel {
  try {
    return db.sublevel<Uint8Array, Uint8Array>(name, {
      keyEncoding: 'view',
      valueEncoding: 'view',
    });
  } catch (error) {
    throw new TypeError(`options.sublevel ${JSON.stringify(name)} is not a valid sublevel name`, {
      cause: error,
    });
  }
}

/** Opens the store's sublevel, or says why not in `ERR_STORE_IO`. */
export async function openSublevel(sublevel: AnyLevel, db: AnyLevel, name: string): Promise<void> {
  try {
    await sublevel.open();
  } catch (error) {
    // A sublevel waits for its database to open but never opens it, and says only "Database
    // failed to open" when the app has closed it.
    const { status } = db;
    const reason =
      status === 'closed' || status === 'closing'
        ? `the database is ${status}; open it before opening the store`
        : describeError(error);
    throw new SessionError(
      'ERR_STORE_IO',
      `Cannot open the sublevel ${JSON.stringify(name)} of the app's database: ${reason}`,
      { cause: error },
    );
  }
}
