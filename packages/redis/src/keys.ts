import { isSessionId } from '@sessile/core';
import { escapeGlob } from '@sessile/core/store';
/**
 * Where one store keeps its keys. Every key of a session carries the id as a hash tag, so the
 * record, its lock and every script on them land in one slot of a Redis Cluster.
 */
export class KeyLayout {
  readonly prefix: string;
  /** Where lock releases are announced, so waiters on other hosts try at once. */
  readonly releaseChannel: string;
  /** SCAN's MATCH for every record key of this store and no other key. */
  readonly recordPattern: string;
  /** SCAN's MATCH for every owner index of this store. */
  readonly ownerIndexPattern: string;
  readonly #recordStart: string;
  readonly #ownerStart: string;

  constructor(prefix: string) {
    this.prefix = prefix;
    this.releaseChannel = `${prefix}released`;
    this.#recordStart = `${prefix}s:{`;
    this.recordPattern = `${escapeGlob(this.#recordStart)}*}`;
    this.#ownerStart = `${prefix}o:{`;
    this.ownerIndexPattern = `${escapeGlob(this.#ownerStart)}*}`;
  }

  record(id: string): string {
    return `${this.#recordStart}${id}}`;
  }

  lock(key: string): string {
    return `${this.prefix}l:{${key}}`;
  }

  /**
   * The sorted set of `owner`'s session ids. base64url keeps owners apart byte for byte and
   * holds no `{` or `}`, so the owner is the key's own hash tag.
   */
  ownerIndex(owner: string): string {
    return `${this.#ownerStart}${Buffer.from(owner, 'utf8').toString('base64url')}}`;
  }

  /**
   * The session id of a record key SCAN returned, or undefined for a key that is not one: a key
   * someone else wrote under the prefix (`<prefix>s:{x}`) names no session id, and listing it
   * would make every `get` of the listing's ids reject with `ERR_INVALID_SESSION_ID`.
   */
  idOf(key: string): string | undefined {
    if (!key.startsWith(this.#recordStart) || !key.endsWith('}')) return undefined;
    const id = key.slice(this.#recordStart.length, -1);
    return isSessionId(id) ? id : undefined;
  }
}

/**
 * The latest time the store asks Redis to keep a key until: JavaScript's last `Date` (year
 * 275760), the latest `expiresAt` a store takes, and far below where Redis refuses a PXAT, a
 * PEXPIREAT or an owner index's expiry (twice a score), which an owner entry's score can reach.
 */
export const LATEST_REDIS_TIME_MS = 8.64e15;

/** `ms` as Redis may be given it: a far-future time becomes `LATEST_REDIS_TIME_MS`. */
export function redisTimeMs(ms: number): number {
  return Math.min(ms, LATEST_REDIS_TIME_MS);
}

/**
 * `print`, remembering its last answer: the writes of a burst share their expiry, and printing
 * a time (a heap number) or its float64's digits cost a create about as much as building the rest
 * of its command. `Object.is`, so 0 and -0, which print differently as digits, are told apart.
 */
export function lastPrinted(print: (value: number) => string): (value: number) => string {
  let last: { value: number; text: string } | undefined;
  return (value) => {
    if (last === undefined || !Object.is(last.value, value)) last = { value, text: print(value) };
    return last.text;
  };
}

/** `ms` as a command's argument, in decimal as `String` prints it. */
export const timeText = lastPrinted(String);

/**
 * The PXAT that makes Redis drop the key at `expiresAt` exactly: Redis keeps a key while
 * `now <= PXAT`, and a record is expired once `now >= expiresAt`. Undefined when already expired.
 */
export function expireAtMs(expiresAt: number, now: number): number | undefined {
  if (expiresAt <= now) return undefined;
  return redisTimeMs(Math.max(Math.ceil(expiresAt) - 1, 1));
}

/**
 * The score of a record's entry in its owner's index: past `expiresAt` by as long again as the
 * record has to live, so the usual `touch`, which extends a session by less than its lifetime,
 * finds its entry already covering the new expiry and needs no second write.
 */
export function indexedUntilFor(expiresAt: number, now: number): number {
  return redisTimeMs(Math.ceil(expiresAt + Math.max(expiresAt - now, 0)));
}
