import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = mkdtempSync(join(tmpdir(), 'sessile-file-paths-'));
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

describe('FileStore: paths that cannot hold a store', () => {
  it.runIf(process.platform === 'linux')(
    'a path on /proc or /sys, or reached through a link into /proc, fails with ERR_STORE_IO naming the path and the filesystem, creating nothing',
    async () => {
      const intoProc = join(root, 'into-proc');
      symlinkSync('/proc/self', intoProc);
      const cases: [path: string, filesystem: string][] = [
        ['/proc/self/sessions', 'proc'],
        ['/proc/sessions/store', 'proc'],
        [join(intoProc, 'sessions'), 'proc'],
        ['/proc/self', 'proc'],
        ['/sys/kernel/sessions', 'sysfs'],
      ];
      for (const [path, filesystem] of cases) {
        const outcome = await openInChild(path);
        expect(outcome, path).toMatchObject({ opened: false, code: 'ERR_STORE_IO' });
        expect(String(outcome.message), path).toContain(path);
        expect(String(outcome.message), path).toContain(filesystem);
      }
      expect(existsSync('/proc/self/sessions')).toBe(false);
    },
    120_000,
  );
});
