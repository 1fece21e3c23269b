/**
 * The oldest Redis the store runs on: it writes with `SET … PXAT` and `ZADD GT` (Redis 6.2) and
 * keeps owners' indexes with `PEXPIRETIME` (7.0).
 */
export const MIN_REDIS_VERSION = '7.0';
const MIN_MAJOR = 7;
const MIN_MINOR = 0;

/** The longest version text an error repeats: a server's answer, not ours to print whole. */
const MAX_SHOWN = 40;

/**
 * The major and minor number of a version as Redis reports it (`7.0.15`; a fork's suffix after
 * `-`, `+` or a space is ignored), or `undefined` where the text is no such version.
 */
export function parseRedisVersion(version: string): [major: number, minor: number] | undefined {
  const match = /^(\d{1,6})\.(\d{1,6})(?:\.\d{1,6})?(?:$|[-+ ])/.exec(version);
  if (match === null) return undefined;
  return [Number(match[1]), Number(match[2])];
}

/** True when `version` is Redis 7.0 or newer; false for an older one or text that is no version. */
export function supportsRedisVersion(version: string): boolean {
  const parsed = parseRedisVersion(version);
  if (parsed === undefined) return false;
  const [major, minor] = parsed;
  return major > MIN_MAJOR || (major === MIN_MAJOR && minor >= MIN_MINOR);
}

/** The `redis_version` of an `INFO server` reply, or `undefined` where it has none. */
export function versionFromInfo(info: string): string | undefined {
  const match = /^redis_version:([^\r\n]*)/m.exec(info);
  return match === null ? undefined : (match[1] as string).trim();
}

/**
 * The `version` of a `HELLO` reply read with maps as flat arrays (`server`, `redis`,
 * `version`, `7.0.15`, …), or `undefined` where it has none.
 */
export function versionFromHello(reply: unknown): string | undefined {
  if (!Array.isArray(reply)) return undefined;
  for (let i = 0; i + 1 < reply.length; i += 2) {
    if (String(reply[i]) === 'version') return String(reply[i + 1]);
  }
  return undefined;
}

/**
 * Why the store refuses a server that reports `version` (`where` names it without credentials),
 * or `undefined` when it is recent enough.
 */
export function versionFault(where: string, version: string): string | undefined {
  if (supportsRedisVersion(version)) return undefined;
  const shown = version.length > MAX_SHOWN ? `${version.slice(0, MAX_SHOWN)}…` : version;
  const found =
    parseRedisVersion(version) === undefined
      ? `reports a version that is not a Redis version (${JSON.stringify(shown)})`
      : `runs Redis ${shown}`;
  return `${where} ${found}; @sessile/redis needs Redis ${MIN_REDIS_VERSION} or newer (SET PXAT, ZADD GT, PEXPIRETIME)`;
}
