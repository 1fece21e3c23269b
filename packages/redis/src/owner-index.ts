import { isSessionError, type OwnedSession, type SessionRecord } from '@sessile/core';
import type { Connection } from './connection.js';
import type { KeyLayout } from './keys.js';
import { INDEX_OWNER, PRUNE_OWNER } from './scripts.js';

/**
 * Each owner's session ids, in a sorted set under the owner's own hash tag. On a cluster that
 * key and a session's record live in different slots, so no script can change both; on one
 * server a write's script adds the entry itself. Either way the same rules hold:
 *
 * - a write adds the entry (scored `indexedUntil`, never below the record's `expiresAt`) before
 *   it writes the record, and `touch` raises the entry before it moves `expiresAt` past the
 *   score, so every live record of an owner has an entry whatever fails between the two steps;
 * - an entry may outlive its record (deleted, moved to another owner, a write refused or
 *   interrupted): `list` reads every entry's record and keeps only live records of that owner;
 * - entries whose score is below Redis's clock belong to expired records and are removed on
 *   every write to the index and on every `list`; the key expires with its latest entry.
 *
 * Entries whose record is gone but whose score is still ahead are skipped, not removed: a
 * session being created has its entry before its record, and looks the same until the record
 * lands. They go once their score passes.
 */
export class OwnerIndex {
  readonly #connection: Connection;
  readonly #keys: KeyLayout;

  constructor(connection: Connection, keys: KeyLayout) {
    this.#connection = connection;
    this.#keys = keys;
  }

  /** Adds `id` to `owner`'s index, covering a record until `indexedUntil`. */
  async add(owner: string, id: string, indexedUntil: number): Promise<void> {
    const key = this.#keys.ownerIndex(owner);
    await INDEX_OWNER.run(this.#connection.send, [key], [id, String(indexedUntil)]);
  }

  /**
   * The live sessions of `owner`: each entry's record read back (`read` as `get` reads it) and
   * kept when it still names this owner. Undecodable records are left out.
   */
  async list(
    owner: string,
    now: number,
    read: (id: string) => Promise<SessionRecord | undefined>,
  ): Promise<OwnedSession[]> {
    const key = this.#keys.ownerIndex(owner);
    const words = ['ZRANGE', key, '0', '-1', 'WITHSCORES'];
    const entries = await this.#connection.command('ownedBy', key, words, entriesOf, true);
    const sessions: OwnedSession[] = [];
    let expired = false;
    await Promise.all(
      entries.map(async ({ value, score }) => {
        const id = String(value);
        const record = await read(id).catch(undecodable);
        if (record?.owner === owner) sessions.push({ id, record });
        else if (score <= now) expired = true;
      }),
    );
    if (expired) {
      // Only tidies: what is listed is already right, so a failure here is not the caller's.
      await this.#connection
        .call('ownedBy', () => PRUNE_OWNER.run(this.#connection.send, [key], []))
        .catch(() => {});
    }
    return sessions;
  }
}

/**
 * `ZRANGE … WITHSCORES`'s reply as entries: flat (member, score, …) over RESP2, pairs over RESP3,
 * whose scores are doubles.
 */
function entriesOf(reply: unknown): Array<{ value: unknown; score: number }> {
  const items = reply as unknown[];
  const entries: Array<{ value: unknown; score: number }> = [];
  if (items.length > 0 && Array.isArray(items[0])) {
    for (const [value, score] of items as Array<[unknown, unknown]>) {
      entries.push({ value, score: Number(score) });
    }
    return entries;
  }
  for (let i = 0; i < items.length; i += 2) {
    entries.push({ value: items[i], score: Number(items[i + 1]) });
  }
  return entries;
}

/** A record that cannot be read as a session is nobody's session. */
function undecodable(error: unknown): undefined {
  if (isSessionError(error, 'ERR_CORRUPT_RECORD') || isSessionError(error, 'ERR_UNSUPPORTED')) {
    return undefined;
  }
  throw error;
}
