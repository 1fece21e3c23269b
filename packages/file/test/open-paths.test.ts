import { execFile, execFileSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FileStore } from '@sessile/file';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = mkdtempSync(join(tmpdir(), 'sessile-file-paths-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const fixture = new URL('./fixtures/open-store.mjs', import.meta.url).pathname;

const isRoot = process.getuid?.() === 0;
/** `nobody`, whom a directory's mode binds as it does not bind root. */
const NOBODY = 65_534;

/**
 * Opens `path` in a child, which is killed (failing the test) if the open never settles; as
 * `nobody` when `asNobody` and this process is root.
 */
async function openInChild(path: string, asNobody = false): Promise<Record<string, unknown>> {
  const user = asNobody && isRoot ? { uid: NOBODY, gid: NOBODY } : {};
  const { stdout } = await run(process.execPath, [fixture, path], {
    timeout: 30_000,
    killSignal: 'SIGKILL',
    ...user,
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

describe('FileStore: a store directory that cannot be made', () => {
  /** Mount points this file made, unmounted after each test and again here should one fail. */
  const mounts: string[] = [];
  afterAll(() => {
    for (const target of mounts.splice(0).reverse()) unmountIfMounted(target);
  });

  function unmountIfMounted(target: string): void {
    const mounted = readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .some((line) => line.split(' ')[1] === target);
    if (mounted) execFileSync('umount', [target]);
  }

  it.skipIf(!isRoot || process.platform !== 'linux')(
    'on a read-only filesystem, names the directory above it that is there and EROFS, kept as cause, creating nothing (a read-only bind mount needs root)',
    async () => {
      const source = join(root, 'ro-source');
      const target = join(root, 'ro-mount');
      mkdirSync(source);
      mkdirSync(target);
      mounts.push(target);
      execFileSync('mount', ['--bind', source, target]);
      try {
        execFileSync('mount', ['-o', 'remount,bind,ro', target]);
        for (const path of [join(target, 'new'), join(target, 'new', 'store')]) {
          const outcome = await openInChild(path);
          expect(outcome, path).toMatchObject({
            opened: false,
            code: 'ERR_STORE_IO',
            causeCode: 'EROFS',
          });
          expect(String(outcome.message), path).toContain(`cannot create ${path}: ${target}:`);
          expect(String(outcome.message), path).toContain('EROFS');
        }
        expect(readdirSync(target)).toEqual([]);
      } finally {
        unmountIfMounted(target);
      }
    },
    60_000,
  );

  it.runIf(process.platform === 'linux')(
    'in a directory of mode 0o555, names that directory and EACCES, kept as cause, creating nothing (run as nobody when this process is root)',
    async () => {
      // Traversable by nobody, so that its only refusal is the write into `locked`.
      const parent = mkdtempSync(join(root, 'mode-'));
      chmodSync(root, 0o755);
      chmodSync(parent, 0o755);
      const locked = join(parent, 'locked');
      mkdirSync(locked, { mode: 0o555 });
      chmodSync(locked, 0o555);
      for (const path of [join(locked, 'new'), join(locked, 'new', 'store')]) {
        const outcome = await openInChild(path, true);
        expect(outcome, path).toMatchObject({
          opened: false,
          code: 'ERR_STORE_IO',
          causeCode: 'EACCES',
        });
        expect(String(outcome.message), path).toContain(`cannot create ${path}: ${locked}:`);
        expect(String(outcome.message), path).toContain('EACCES');
      }
      expect(readdirSync(locked)).toEqual([]);
    },
    60_000,
  );

  it('through a symbolic link to a missing directory, probe refuses as open does, both naming the link, creating nothing', async () => {
    const parent = mkdtempSync(join(root, 'dangling-'));
    const link = join(parent, 'sessions');
    symlinkSync(join(parent, 'gone'), link);
    for (const path of [link, join(link, 'store')]) {
      const probe = await FileStore.probe({ path });
      expect(probe, path).toMatchObject({
        state: 'refused',
        reason: expect.stringContaining(`${link} is a symbolic link to a missing directory`),
      });
      const outcome = await openInChild(path);
      expect(outcome, path).toMatchObject({ opened: false, code: 'ERR_STORE_IO' });
      expect(String(outcome.message), path).toContain(
        `${link} is a symbolic link to a missing directory`,
      );
    }
    expect(readdirSync(parent)).toEqual(['sessions']);
  });
});
