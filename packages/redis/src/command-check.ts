import { isSessionError, SessionError } from '@sessile/core';
import { escapeGlob } from '@sessile/core/store';
import type { Connection } from './connection.js';
import type { KeyLayout } from './keys.js';
import { Script } from './scripts.js';

/**
 * The hash tag of the keys the check names: a `:` is in no session id and no owner's base64url,
 * so they are no session's record or lock and no owner's index, and one slot holds all three.
 */
const CHECK_TAG = '{sessile:check}';

/**
 * Lua: calls each command the store sends or its scripts call (`EVAL` and `EVALSHA` run it, and
 * `SUBSCRIBE` is `open`'s next step), on keys that do not exist, in a form that then changes
 * nothing. `APPEND` has none, so what it makes is deleted in the same script, and only where
 * `DEL` runs. KEYS: a record, a lock and an owner's index; ARGV: a SCAN pattern, the release
 * channel. Answers the name and the error of each call that failed, flat.
 */
const CHECK = new Script(`
local failed = {}
local function try(name, ...)
  local answer = redis.pcall(name, ...)
  if type(answer) == 'table' and answer.err ~= nil then
    failed[#failed + 1] = name
    failed[#failed + 1] = answer.err
  end
  return answer
end
local record, lock, index = KEYS[1], KEYS[2], KEYS[3]
try('PING')
try('TIME')
try('GET', record)
try('MGET', record)
try('STRLEN', record)
try('GETRANGE', record, 0, 0)
try('SET', record, '', 'XX')
try('SETRANGE', record, 0, '')
local deletes = type(try('DEL', record)) == 'number'
try('UNLINK', record)
try('PEXPIRE', lock, 1)
try('PEXPIREAT', lock, 1)
if try('EXISTS', lock) == 0 and deletes then
  try('APPEND', lock, '')
  redis.pcall('DEL', lock)
end
try('ZRANGE', index, 0, 0)
try('ZADD', index, 'XX', 'GT', 0, 'check')
try('ZREMRANGEBYSCORE', index, 0, 0)
try('PEXPIRETIME', index)
try('SCAN', '0', 'MATCH', ARGV[1], 'COUNT', '1', 'TYPE', 'string')
try('PUBLISH', ARGV[2], '')
return failed
`);

/**
 * What Redis answers a command this user may not run or this server does not know: a renamed
 * or disabled command (`rename-command`), or an ACL that leaves out a command, key or channel
 * (in a script, Redis 7.0 answers "can't run this command", 7.2 on "ACL failure in script").
 * Any other error (out of memory, a command a script may not call) is no refusal.
 */
const REFUSED =
  /unknown (redis )?command|can't run this command|can't access|can't publish|^NOPERM|no permissions|ACL failure/i;

/**
 * Refuses, with `ERR_UNSUPPORTED` naming each, a server that refuses a command the store needs:
 * otherwise `open` would succeed and only some operations fail later (every write with an
 * owner, say, where the ACL left out `PEXPIRETIME`). On a cluster, the master of one slot.
 */
export async function checkCommands(connection: Connection, keys: KeyLayout): Promise<void> {
  const record = `${keys.prefix}s:${CHECK_TAG}`;
  const names = [record, `${keys.prefix}l:${CHECK_TAG}`, `${keys.prefix}o:${CHECK_TAG}`];
  const args = [escapeGlob(record), keys.releaseChannel];
  let failed: unknown[];
  try {
    failed = (await connection.call('command check', () =>
      CHECK.run(connection.send, names, args),
    )) as unknown[];
  } catch (error) {
    // The script itself: EVALSHA, or EVAL once the server does not know the script yet.
    throw refusedBy(error, connection.where) ?? error;
  }
  const refused: string[] = [];
  for (let i = 0; i < failed.length; i += 2) {
    const message = String(failed[i + 1]);
    if (REFUSED.test(message)) refused.push(`${String(failed[i])} (${message})`);
  }
  if (refused.length > 0) throw refusal(connection.where, refused);
}

/**
 * `ERR_UNSUPPORTED` for an `ERR_STORE_IO` of `open` whose cause is a refusal (as `REFUSED`
 * reads it), naming it; undefined for any other error.
 */
export function refusedBy(error: unknown, where: string): SessionError | undefined {
  const reply = isSessionError(error, 'ERR_STORE_IO') ? error.cause : undefined;
  if (!(reply instanceof Error) || !REFUSED.test(reply.message)) return undefined;
  return refusal(where, [reply.message]);
}

function refusal(where: string, refused: string[]): SessionError {
  return new SessionError(
    'ERR_UNSUPPORTED',
    `${where} refuses commands @sessile/redis needs: ${refused.join('; ')}. See "A restricted server" in its README for the ACL rules it needs`,
  );
}
