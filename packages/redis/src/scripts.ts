import { createHash } from 'node:crypto';
import type { CommandArgument, Send } from './connection.js';
import {
  EXPIRES_AT_OFFSET,
  FORMAT_DIGIT,
  HEADER_BYTES,
  INDEXED_UNTIL_OFFSET,
  MAGIC,
  OWNER_LENGTH_OFFSET,
} from './record-format.js';

/** Follows the token in a lock key once a claim was refused; tokens are base64url, so never contain it. */
export const WAITED_MARK = '!';

/** A Lua script run by EVALSHA, loaded by EVAL on the node that does not know it yet. */
export class Script {
  readonly #source: string;
  readonly #sha: string;

  constructor(source: string) {
    this.#source = source;
    this.#sha = createHash('sha1').update(source).digest('hex');
  }

  /** Runs on the node of `keys[0]`; every key must share its slot on a cluster. */
  run(send: Send, keys: string[], args: CommandArgument[]): Promise<unknown> {
    const words: CommandArgument[] = ['EVALSHA', this.#sha, String(keys.length)];
    for (const key of keys) words.push(key);
    for (const arg of args) words.push(arg);
    const firstKey = keys[0] as string;
    return send(firstKey, words).catch((error: unknown) => {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      words[0] = 'EVAL';
      words[1] = this.#source;
      return send(firstKey, words);
    });
  }
}

// Owner indexes: one owner's sorted set of session ids, scored by indexedUntil. A score below
// Redis's own clock means that record expired (its PXAT is below its expiresAt, which is at most
// its score), so such entries can go without reading the record. Redis's clock, not the
// caller's: the records expire by it.

/** Lua: drops the entries of expired records from the index `key`; answers Redis's clock in ms. */
const PRUNE = `
local function prune(key)
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. string.format('%.0f', now))
  return now
end
`;

/**
 * Lua: adds session `id` to the index `key` at `score` (a string). Keeps the higher score of
 * two writers, and the key alive at least as long as its latest entry: when an entry outlives
 * the key, the key's expiry moves as far past that entry as the entry is from now, so the next
 * entries of sessions that live as long find it covered. Expired entries go when the expiry
 * moves, and on one add in eight otherwise (chosen by the id's first byte, random for ids
 * sessile makes), so an add is usually three commands, not six; an owner who is never listed
 * keeps about eight expired entries beyond the ones of its last two lifetimes.
 */
const INDEX = `${PRUNE}
local function index(key, id, score)
  redis.call('ZADD', key, 'GT', score, id)
  local last = tonumber(score)
  if redis.call('PEXPIRETIME', key) < last then
    local now = prune(key)
    redis.call('PEXPIREAT', key, string.format('%.0f', last + math.max(last - now, 0)))
  elseif string.byte(id, 1) % 8 == 0 then
    prune(key)
  end
end
`;

/** KEYS[1] the owner's index. ARGV: the session id, its indexedUntil. */
export const INDEX_OWNER = new Script(`${INDEX}
index(KEYS[1], ARGV[1], ARGV[2])
return 1
`);

/**
 * New records and their owners' entries, where both keys share a server: KEYS[2i-1] a record,
 * KEYS[2i] its owner's index; ARGV[4i-3..4i] its value, PXAT, session id and indexedUntil. Each
 * entry goes in before its record. Answers, per record, 1 when it wrote it, 0 when one already
 * existed (its entry may then be stale, which listings skip), or the error that stopped that
 * create alone: one create's failure (a key of another type under the prefix) never undoes or
 * stops the others'.
 */
export const CREATE_OWNED = new Script(`${INDEX}
local function create(i)
  local at = 4 * (i - 1)
  index(KEYS[2 * i], ARGV[at + 3], ARGV[at + 4])
  return redis.call('SET', KEYS[2 * i - 1], ARGV[at + 1], 'NX', 'PXAT', ARGV[at + 2]) and 1 or 0
end
local created = {}
for i = 1, #KEYS / 2 do
  local ok, answer = pcall(create, i)
  if ok then
    created[i] = answer
  else
    created[i] = type(answer) == 'table' and answer.err or tostring(answer)
  end
end
return created
`);

/** KEYS[1] the owner's index. Drops the entries of expired records. */
export const PRUNE_OWNER = new Script(`${PRUNE}
prune(KEYS[1])
return 1
`);

// Lock keys hold the holder's token, followed by WAITED_MARK once a claim was refused while it
// held: only the release of a lock so marked is published, so a release nobody waited for costs
// no PUBLISH and no message in any subscribed process. The mark is in the key's value, so it
// lives exactly as long as the lease.

/**
 * Lua: `holds(key, token)` answers 0 when `key` does not hold `token`, 1 when it does, 2 when it
 * does and someone waited. A key of another type under the prefix (someone else's) holds no
 * lease of ours: `redis.pcall` answers its WRONGTYPE as a table, which is no token.
 */
const HOLDS = `
local function holds(key, token)
  local held = redis.pcall('GET', key)
  if held == token then return 1 end
  if held == token .. '${WAITED_MARK}' then return 2 end
  return 0
end
`;

// Fenced writes: KEYS[1] the record, KEYS[2] its lock. They answer -1 when the lock key does not
// hold our token (released, taken over, or its lease ran out), so nothing is written. Given the
// release channel and the lock's key in the kit (ARGV[10] and ARGV[11] for WRITE, ARGV[5] and
// ARGV[6] for FENCED_SET, ARGV[7] and ARGV[8] for TOUCH, ARGV[2] and ARGV[3] for FENCED_DELETE),
// a write that answers 0 or 1 also frees the lock, and announces it when someone waited, so a
// commit and its unlock are one command.

/**
 * Lua: `fence(token)` answers false when KEYS[2] does not hold `token` (an unfenced write
 * passes ''); `free(channel, key)` then frees the lock when a release channel is given.
 */
const FENCE = `${HOLDS}
local held = 0
local function fence(token)
  if token == '' then return true end
  held = holds(KEYS[2], token)
  return held ~= 0
end
local function free(channel, key)
  if channel ~= nil and channel ~= '' then
    redis.call('DEL', KEYS[2])
    if held == 2 then redis.call('PUBLISH', channel, key) end
  end
end
`;

/**
 * Lua, reading the ${HEADER_BYTES}-byte `header` of a record (see record-format.ts):
 * `isCurrent(header)` when it starts a record of the format this version writes, its digits
 * all lowercase hex and both float64s finite, as `headerFault` accepts it; `ownerBytes(header)`;
 * `indexedUntil(header)`, the float64 its 16 digits spell.
 */
const HEADER = `
local function finite(header, at)
  return tonumber(string.sub(header, at + 1, at + 3), 16) % 2048 ~= 2047
end
local function isCurrent(header)
  return #header == ${HEADER_BYTES} and string.sub(header, 1, ${MAGIC.length + 1}) == '${MAGIC}${FORMAT_DIGIT}'
    and string.find(header, '^[0-9a-f]+$', ${MAGIC.length + 2}) ~= nil
    and finite(header, ${EXPIRES_AT_OFFSET}) and finite(header, ${INDEXED_UNTIL_OFFSET})
end
local function ownerBytes(header)
  return tonumber(string.sub(header, ${OWNER_LENGTH_OFFSET + 1}, ${HEADER_BYTES}), 16)
end
local function byte(pair) return string.char(tonumber(pair, 16)) end
local function indexedUntil(header)
  local digits = string.sub(header, ${INDEXED_UNTIL_OFFSET + 1}, ${INDEXED_UNTIL_OFFSET + 16})
  return (struct.unpack('>d', (string.gsub(digits, '..', byte))))
end
`;

/**
 * Lua: `isUtf8(bytes)` when `bytes` are UTF-8 as a strict decoder (JavaScript's `TextDecoder`
 * with `fatal`) reads them: no overlong form, surrogate or code point past U+10FFFF, and no
 * sequence cut short.
 */
const UTF8 = `
local function isUtf8(bytes)
  local i, n = 1, #bytes
  while i <= n do
    local c = string.byte(bytes, i)
    if c >= 0x80 then
      local follow, low, high
      if c >= 0xC2 and c <= 0xDF then follow, low, high = 1, 0x80, 0xBF
      elseif c == 0xE0 then follow, low, high = 2, 0xA0, 0xBF
      elseif c == 0xED then follow, low, high = 2, 0x80, 0x9F
      elseif c >= 0xE1 and c <= 0xEF then follow, low, high = 2, 0x80, 0xBF
      elseif c == 0xF0 then follow, low, high = 3, 0x90, 0xBF
      elseif c >= 0xF1 and c <= 0xF3 then follow, low, high = 3, 0x80, 0xBF
      elseif c == 0xF4 then follow, low, high = 3, 0x80, 0x8F
      else return false end
      if i + follow > n then return false end
      local second = string.byte(bytes, i + 1)
      if second < low or second > high then return false end
      for k = 2, follow do
        local byte = string.byte(bytes, i + k)
        if byte < 0x80 or byte > 0xBF then return false end
      end
      i = i + follow
    end
    i = i + 1
  end
  return true
end
`;

/**
 * A write that must check the record first: fenced, or giving the record an owner. ARGV: token
 * ('' unfenced), value, PXAT ('' when the record is already expired), only ('', 'absent',
 * 'present'), owner ('' none), the new expiresAt, '1' when the caller has already put the
 * value's indexedUntil in the owner's index, the session id, the value's indexedUntil. Without
 * that, the record must already belong to this owner with an indexedUntil covering the new
 * expiresAt (the value then keeps it). Otherwise, given the owner's index as KEYS[3] (possible
 * only where both keys share a server, not on a cluster), it adds the entry itself before the
 * record; without KEYS[3] it answers `{'index'}` and writes nothing.
 */
export const WRITE = new Script(`${INDEX}${FENCE}${HEADER}
if not fence(ARGV[1]) then return -1 end
local exists = redis.call('EXISTS', KEYS[1]) == 1
if (ARGV[4] == 'absent' and exists) or (ARGV[4] == 'present' and not exists) then
  free(ARGV[10], ARGV[11])
  return 0
end
if ARGV[3] == '' then
  redis.call('DEL', KEYS[1])
  free(ARGV[10], ARGV[11])
  return 1
end
local value = ARGV[2]
if ARGV[5] ~= '' and ARGV[7] ~= '1' then
  local kept = nil
  if exists then
    -- A key of another type (someone else's, under the prefix) is overwritten, as SET would.
    local read, header = pcall(redis.call, 'GETRANGE', KEYS[1], 0, ${HEADER_BYTES - 1})
    if read and isCurrent(header) then
      local length = ownerBytes(header)
      if length == #ARGV[5] and indexedUntil(header) >= tonumber(ARGV[6])
        and redis.call('GETRANGE', KEYS[1], ${HEADER_BYTES}, ${HEADER_BYTES - 1} + length) == ARGV[5] then
        kept = string.sub(header, ${INDEXED_UNTIL_OFFSET + 1}, ${INDEXED_UNTIL_OFFSET + 16})
      end
    end
  end
  if kept ~= nil then
    value = string.sub(value, 1, ${INDEXED_UNTIL_OFFSET}) .. kept .. string.sub(value, ${INDEXED_UNTIL_OFFSET + 17})
  elseif KEYS[3] ~= nil then
    index(KEYS[3], ARGV[8], ARGV[9])
  else
    return {'index'}
  end
end
redis.call('SET', KEYS[1], value, 'PXAT', ARGV[3])
free(ARGV[10], ARGV[11])
return 1
`);

/**
 * A fenced write of a live record without an owner, what every locked commit of an anonymous
 * session is: its `NX` or `XX` decides, so it needs neither `EXISTS` nor the owner's steps.
 * ARGV: token, value, PXAT, 'NX', 'XX' or '', then the release kit (ARGV[5], ARGV[6]).
 */
export const FENCED_SET = new Script(`${FENCE}
if not fence(ARGV[1]) then return -1 end
local written
if ARGV[4] == '' then
  written = redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
else
  written = redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3], ARGV[4])
end
free(ARGV[5], ARGV[6])
if written then return 1 end
return 0
`);

/**
 * KEYS[1] the record, KEYS[2] its lock (only for a fenced touch). ARGV: token ('' for an
 * unfenced touch), the new expiresAt's 16 hex digits, PXAT ('' when already expired), the new
 * expiresAt as Redis may be given it, the owner whose index already covers it (absent or '' for
 * none) and that cover's indexedUntil digits, then the release kit. When the record has an
 * owner whose entry does not cover the new expiry (and the caller has not just raised it), or an
 * owner that is not UTF-8 (which the caller rejects as corrupt), it answers `{owner}` and writes
 * nothing. A new expiry already past by Redis's clock deletes the record, and it answers 0. Bytes that do not start a record of this format, or that end within the
 * owner, are left as they are, and it answers their first ${HEADER_BYTES} for the caller to reject
 * as `get` would.
 */
export const TOUCH = new Script(`${FENCE}${HEADER}${UTF8}
if not fence(ARGV[1]) then return -1 end
local header = redis.call('GETRANGE', KEYS[1], 0, ${HEADER_BYTES - 1})
-- GETRANGE answers '' for a missing key and for an empty value alike.
if header == '' and redis.call('EXISTS', KEYS[1]) == 0 then
  free(ARGV[7], ARGV[8])
  return 0
end
if not isCurrent(header) then return header end
local length = ownerBytes(header)
-- Without an owner the header read whole is the record's whole head.
if length > 0 and ${HEADER_BYTES} + length > redis.call('STRLEN', KEYS[1]) then return header end
if ARGV[3] == '' then
  redis.call('DEL', KEYS[1])
  free(ARGV[7], ARGV[8])
  return 1
end
local owner = nil
if length > 0 then
  owner = redis.call('GETRANGE', KEYS[1], ${HEADER_BYTES}, ${HEADER_BYTES - 1} + length)
  -- An owner that is not UTF-8 is a corrupt record, as get reads it: the caller rejects it.
  if not isUtf8(owner) then return {owner} end
end
local raise = length > 0 and tonumber(ARGV[4]) > indexedUntil(header)
if raise and owner ~= ARGV[5] then return {owner} end
-- The TTL first: should Redis refuse it, the record stays as it was.
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
-- A time already past by Redis's clock (a touch that arrived late) has deleted the key: the
-- session has ended, and writing into it now would make a key that never expires.
if redis.call('EXISTS', KEYS[1]) == 0 then
  free(ARGV[7], ARGV[8])
  return 0
end
if raise then redis.call('SETRANGE', KEYS[1], ${INDEXED_UNTIL_OFFSET}, ARGV[6]) end
redis.call('SETRANGE', KEYS[1], ${EXPIRES_AT_OFFSET}, ARGV[2])
free(ARGV[7], ARGV[8])
return 1
`);

/** ARGV: token. */
export const FENCED_DELETE = new Script(`${FENCE}
if not fence(ARGV[1]) then return -1 end
local deleted = redis.call('DEL', KEYS[1])
free(ARGV[2], ARGV[3])
return deleted
`);

/**
 * Lua: `claimTaken(key, token, leaseMs)`, after `SET NX` found `key` taken: true when it holds
 * `token` already (a claim sent again after its connection was lost, whose first send took the
 * key with the answer lost), its lease then moved to `leaseMs` from now; else marks the lock
 * (held by another) as waited for, once, and answers false. A key of another type under the
 * prefix (someone else's) is neither.
 */
const CLAIM_TAKEN = `
local function claimTaken(key, token, leaseMs)
  local held = redis.pcall('GET', key)
  if type(held) ~= 'string' then return false end
  if held == token or held == token .. '${WAITED_MARK}' then
    redis.call('PEXPIRE', key, leaseMs)
    return true
  end
  if string.sub(held, -${WAITED_MARK.length}) ~= '${WAITED_MARK}' then
    redis.call('APPEND', key, '${WAITED_MARK}')
  end
  return false
end
`;

/**
 * KEYS[1] the lock. ARGV: token, lease in ms. Answers 1 when taken, or already held by the
 * token; else marks the lock waited for and answers 0. Sent any number of times, a claim takes
 * the key once.
 */
export const CLAIM_LOCK = new Script(`${CLAIM_TAKEN}
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if claimTaken(KEYS[1], ARGV[1], ARGV[2]) then return 1 end
return 0
`);

/**
 * KEYS[1] the lock, KEYS[2] the record (one hash tag, so one cluster slot). ARGV: token, lease
 * in ms. Answers {0} when the lock is held by another (marking it waited for), else {1} and the
 * record's value if any; a lock already held by the token is taken, as `CLAIM_LOCK` takes it.
 */
export const CLAIM_AND_GET = new Script(`${CLAIM_TAKEN}
-- A record key of another type fails the script before the lock is claimed; STRLEN reads
-- nothing, so a refused claim never copies the record.
redis.call('STRLEN', KEYS[2])
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
  and not claimTaken(KEYS[1], ARGV[1], ARGV[2]) then
  return {0}
end
local value = redis.call('GET', KEYS[2])
if value then return {1, value} end
return {1}
`);

/** KEYS[1] the lock. ARGV: token, lease in ms. */
export const EXTEND_LOCK = new Script(`${HOLDS}
if holds(KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`);

/** KEYS[1] the lock. ARGV: token, the release channel, the lock's key in the kit. Publishes only when someone waited. */
export const RELEASE_LOCK = new Script(`${HOLDS}
local held = holds(KEYS[1], ARGV[1])
if held == 0 then return 0 end
redis.call('DEL', KEYS[1])
if held == 2 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return 1
`);
