import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = mkdtempSync(join(tmpdir(), 'sessile-level-paths-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const fixture = new URL('./fixtures/open-store.mjs', import.meta.url).pathname;

/** Opens `path` in a child, which is killed (failing the test) if the open never settles. */
async function openInChild(path: string): Promise<Record<string, unknown>> {
  const { stdout } = await run(process.execPath, [fixture, path], {
    timeout: 30_000,
    killSignal: 'SIGKILL',
  });
  return JSON.parse(stdout) as Record<string, unknown>;
}

describe('LevelStore: paths that cannot hold a database', () => {
  it.runIf(process.platform === 'linux')(
    'a path on /proc or /sys, or reached through a link into /proc, fails with ERR_STORE_IO naming the path and the filesystem',
    async () => {
      const intoProc = join(root, 'into-proc');
      symlinkSync('/proc/self', intoProc);
      const cases: [path: string, filesystem: string][] = [
        // Node's recursive mkdir never returns on these missing /proc paths.
        ['/proc/self/sessions', 'proc'],
        ['/proc/sessions/db', 'proc'],
        [join(intoProc, 'sessions'), 'proc'],
        ['/proc/self/status', 'proc'],
        ['/proc/1', 'proc'],
        ['/sys/kernel/sessions', 'sysfs'],
      ];
      for (const [path, filesystem] of cases) {
        const outcome = await openInChild(path);
        expect(outcome, path).toMatchObject({ opened: false, code: 'ERR_STORE_IO' });
        expect(outcome.message, path).toBe(
          `Cannot open LevelDB directory ${path}: it is on a ${filesystem} filesystem, whose files are kernel interfaces, not storage`,
        );
      }
      expect(existsSync('/proc/self/sessions')).toBe(false);
    },
    120_000,
  );

  it('/proc/self/fd/0, a special file, fails with ERR_STORE_IO naming the path', async () => {
    const outcome = await openInChild('/proc/self/fd/0');
    expect(outcome).toMatchObject({ opened: false, code: 'ERR_STORE_IO' });
    expect(outcome.message).toMatch(/^Cannot open LevelDB directory \/proc\/self\/fd\/0: /);
  }, 60_000);
});
