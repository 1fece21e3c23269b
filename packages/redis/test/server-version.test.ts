import { describe, expect, it } from 'vitest';
import {
  parseRedisVersion,
  supportsRedisVersion,
  versionFault,
  versionFromHello,
  versionFromInfo,
} from '../src/server-version.js';

describe('the server version open requires', () => {
  it.each([
    ['6.0.20', false],
    ['6.2.14', false],
    // Redis 7.0's release candidates called themselves 6.9.24x.
    ['6.9.242', false],
    ['7.0.0', true],
    ['7.0.15', true],
    ['7.2.4', true],
    ['8.0.2', true],
    // Compared as numbers, not as text: '10' sorts before '7'.
    ['10.0.0', true],
    ['7.0', true],
    ['7.2.4-rc1', true],
    // A build of Redis's unstable branch.
    ['255.255.255', true],
  ])('%s is supported: %s', (version, supported) => {
    expect(supportsRedisVersion(version)).toBe(supported);
  });

  it.each(['', 'unknown', '7', 'v7.0.0', '7.x', ' 7.0.0', '7.0.0.1'])(
    '%j, which is no version, is refused',
    (version) => {
      expect(parseRedisVersion(version)).toBeUndefined();
      expect(supportsRedisVersion(version)).toBe(false);
    },
  );

  it('names the server, the version found and the version needed', () => {
    expect(versionFault('Redis at 10.0.0.1:6379', '7.0.15')).toBeUndefined();
    expect(versionFault('Redis at 10.0.0.1:6379', '6.2.14')).toBe(
      'Redis at 10.0.0.1:6379 runs Redis 6.2.14; @sessile/redis needs Redis 7.0 or newer (SET PXAT, ZADD GT, PEXPIRETIME)',
    );
    const odd = versionFault('Redis at 10.0.0.1:6379', 'x'.repeat(100)) as string;
    expect(odd).toContain('is not a Redis version');
    expect(odd).toContain('needs Redis 7.0 or newer');
    // A server's answer is not repeated at any length.
    expect(odd.length).toBeLessThan(200);
  });

  it('reads redis_version from INFO server, and version from HELLO as a flat array', () => {
    const info =
      '# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\nvalkey_version:8.0.1\r\n';
    expect(versionFromInfo(info)).toBe('7.0.15');
    expect(versionFromInfo('# Server\r\nredis_mode:standalone\r\n')).toBeUndefined();
    const hello = [
      'server',
      'redis',
      'version',
      '7.2.4',
      'proto',
      2,
      'id',
      5,
      'mode',
      'standalone',
    ];
    expect(versionFromHello(hello)).toBe('7.2.4');
    expect(versionFromHello(['server', 'redis'])).toBeUndefined();
    expect(versionFromHello('OK')).toBeUndefined();
  });
});
