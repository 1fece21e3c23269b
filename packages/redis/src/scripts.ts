import { createHash } from 'node:crypto';

export type ScriptArgument = string | Buffer;

/** What a script runs on: a client, a Sentinel client or a cluster (which routes by the first key). */
export interface ScriptRunner {
  evalSha(sha: string, options: { keys: string[]; arguments: ScriptArgument[] }): Promise<unknown>;
  eval(script: string, options: { keys: string[]; arguments: ScriptArgument[] }): Promise<unknown>;
}

/** A Lua script run by EVALSHA, loaded by EVAL on the node that does not know it yet. */
export class Script {
  readonly #source: string;
  readonly #sha: string;

  constructor(source: string) {
    this.#source = source;
    this.#sha = createHash('sha1').update(source).digest('hex');
  }

  async run(runner: ScriptRunner, keys: string[], args: ScriptArgument[]): Promise<unknown> {
    const options = { keys, arguments: args };
    try {
      return await runner.evalSha(this.#sha, options);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return runner.eval(this.#source, options);
    }
  }
}

// Fenced writes: KEYS[1] the record, KEYS[2] its lock. They answer -1 when the lock key does not
// hold our token (released, taken over, or its lease ran out), so nothing is written.

/** ARGV: token, value, PXAT ('' when the record is already expired), only ('', 'absent', 'present'). */
export const FENCED_SET = new Script(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
local exists = redis.call('EXISTS', KEYS[1]) == 1
if (ARGV[4] == 'absent' and exists) or (ARGV[4] == 'present' and not exists) then return 0 end
if ARGV[3] == '' then redis.call('DEL', KEYS[1])
else redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3]) end
return 1
`);

/** ARGV: token ('' for an unfenced touch), the new expiresAt bytes, PXAT ('' when already expired), their offset. */
export const TOUCH = new Script(`
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[3] == '' then redis.call('DEL', KEYS[1]) return 1 end
redis.call('SETRANGE', KEYS[1], ARGV[4], ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 1
`);

/** ARGV: token. */
export const FENCED_DELETE = new Script(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
return redis.call('DEL', KEYS[1])
`);

/** KEYS[1] the lock. ARGV: token, lease in ms. */
export const EXTEND_LOCK = new Script(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`);

/** KEYS[1] the lock. ARGV: token, the release channel, the lock's key in the kit. */
export const RELEASE_LOCK = new Script(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
`);
