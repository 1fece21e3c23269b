import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { isSessionError, type SessionError } from '@sessile/core';
import { describe, expect, it } from 'vitest';
import { DbmStore, type DbmStoreOptions } from '../src/index.js';
import { useTestPaths } from './helpers.js';

const { newPath } = useTestPaths('probe');

/** Every entry under `directory` with its kind, mode, size, mtime and content: what a probe must not change. */
function snapshot(directory: string): string[] {
  const entries: string[] = [];
  const walk = (at: string) => {
    for (const name of readdirSync(at).sort()) {
      const entry = join(at, name);
      const stats = lstatSync(entry);
      const common = `${entry} ${stats.mode.toString(8)} ${stats.mtimeMs}`;
      if (stats.isDirectory()) {
        entries.push(`${common} dir`);
        walk(entry);
      } else if (stats.isSymbolicLink()) {
        entries.push(`${common} -> ${readlinkSync(entry)}`);
      } else {
        const digest = createHash('sha256').update(readFileSync(entry)).digest('hex');
        entries.push(`${common} ${stats.size} ${digest}`);
      }
    }
  };
  walk(directory);
  return entries;
}

async function openError(options: DbmStoreOptions): Promise<SessionError> {
  try {
    await (await DbmStore.open(options)).close();
  } catch (error) {
    if (isSessionError(error)) return error;
    throw error;
  }
  throw new Error(`open(${JSON.stringify(options)}) resolved`);
}

/** A closed dbm file at a new path, used with `stripes`. */
async function dbmFile(stripes: number): Promise<string> {
  const path = newPath();
  await (await DbmStore.open({ path, stripes })).close();
  return path;
}

/**
 * Probes `options`, expects `refused` with the very reason `open` then rejects with, and nothing
 * changed on disk by the probe. Returns `open`'s error.
 */
async function expectRefusedAsOpenIs(options: DbmStoreOptions): Promise<SessionError> {
  const directory = dirname(options.path);
  const before = snapshot(directory);
  const probe = await DbmStore.probe(options);
  expect(snapshot(directory)).toEqual(before);
  const error = await openError(options);
  expect(error.code).toBe('ERR_STORE_IO');
  expect(probe).toEqual({ state: 'refused', reason: error.message, cause: expect.anything() });
  expect(probe).toMatchObject({ cause: { code: 'ERR_STORE_IO', message: error.message } });
  return error;
}

describe('DbmStore.probe judges the lock directory as open does, changing nothing', () => {
  it('refuses another stripe count than the one the file is used with', async () => {
    const path = await dbmFile(16);
    const error = await expectRefusedAsOpenIs({ path, stripes: 32 });
    expect(error.message).toContain(`${path}.locks/stripe-count`);
    expect(error.message).toMatch(/used with stripes: 16 .*not 32/);
  });

  it('answers present for the recorded count, or for no `stripes`, which takes it', async () => {
    const path = await dbmFile(16);
    const before = snapshot(dirname(path));
    expect(await DbmStore.probe({ path, stripes: 16 })).toEqual({ state: 'present' });
    expect(await DbmStore.probe({ path })).toEqual({ state: 'present' });
    expect(snapshot(dirname(path))).toEqual(before);
    const store = await DbmStore.open({ path });
    expect(store.locks.stats().stripes).toBe(16);
    await store.close();
  });

  it('refuses a stripe count file that holds no count, with or without `stripes`', async () => {
    for (const options of [{}, { stripes: 16 }]) {
      const path = await dbmFile(16);
      writeFileSync(`${path}.locks/stripe-count`, 'garbage');
      const error = await expectRefusedAsOpenIs({ path, ...options });
      expect(error.message).toContain('used with stripes: garbage');
    }
  });

  it('refuses a stripe count file it cannot read, keeping the errno as cause', async () => {
    const path = await dbmFile(16);
    rmSync(`${path}.locks/stripe-count`);
    mkdirSync(`${path}.locks/stripe-count`);
    const error = await expectRefusedAsOpenIs({ path, stripes: 16 });
    expect(error.message).toContain('cannot read its stripe count');
    expect(await DbmStore.probe({ path, stripes: 16 })).toMatchObject({
      cause: { cause: { code: 'EISDIR' } },
    });
  });

  it('refuses a lock directory, or a directory of its lock files, that is a regular file', async () => {
    for (const inside of ['', '/holders', '/stripes']) {
      const path = await dbmFile(16);
      rmSync(`${path}.locks${inside}`, { recursive: true, force: true });
      writeFileSync(`${path}.locks${inside}`, 'not a directory');
      const error = await expectRefusedAsOpenIs({ path });
      expect(error.message).toContain(
        `${path}.locks${inside}, where its lock files go, is not a directory`,
      );
    }
  });

  it('refuses a missing file whose lock directory open would refuse, though it would lay the file out', async () => {
    const mismatched = await dbmFile(16);
    rmSync(mismatched);
    const error = await expectRefusedAsOpenIs({ path: mismatched, stripes: 32 });
    expect(error.message).toMatch(/used with stripes: 16 .*not 32/);
    // The refused open left no new file behind either.
    expect(existsSync(mismatched)).toBe(false);

    const blocked = newPath();
    writeFileSync(`${blocked}.locks`, 'not a directory');
    await expectRefusedAsOpenIs({ path: blocked });
    expect(existsSync(blocked)).toBe(false);
  });

  it('reads the lock directory beside the real file, as open does, when the path is a symbolic link', async () => {
    const real = await dbmFile(16);
    const link = join(dirname(real), 'link.dbm');
    symlinkSync(real, link);
    const error = await expectRefusedAsOpenIs({ path: link, stripes: 32 });
    expect(error.message).toContain(`${real}.locks/stripe-count`);
  });

  it('refuses a symbolic link to a missing file, which open will not create through', async () => {
    const path = newPath();
    symlinkSync(join(dirname(path), 'gone.dbm'), path);
    const error = await expectRefusedAsOpenIs({ path });
    expect(error.message).toContain('a symbolic link to a missing file');
    expect(readdirSync(dirname(path))).toEqual([basename(path)]);
  });

  it.skipIf(process.getuid?.() === 0)(
    'refuses a file in a directory where its lock directory cannot be made (needs a user without CAP_DAC_OVERRIDE; root may write anywhere)',
    async () => {
      const path = newPath();
      writeFileSync(path, '');
      chmodSync(dirname(path), 0o555);
      try {
        const error = await expectRefusedAsOpenIs({ path });
        expect(error.message).toContain('cannot create its lock directory');
        expect(error.cause).toMatchObject({ code: 'EACCES' });
      } finally {
        chmodSync(dirname(path), 0o755);
      }
    },
  );
});

describe('DbmStore.probe checks options as open does', () => {
  it('and its errors name probe, creating nothing', async () => {
    const path = newPath();
    const before = snapshot(dirname(path));
    for (const [options, message] of [
      [
        { path, sweepmode: 'full-scan' },
        "DbmStore.probe: unknown option 'sweepmode'; did you mean 'sweepMode'?",
      ],
      [
        { path, cleanup: 'incremental' },
        "DbmStore.probe: unknown option 'cleanup'; it is now 'sweepMode', with the same values",
      ],
      [null, 'DbmStore.probe needs an options object with a path'],
      [
        { path, durability: 'fast' },
        "durability must be 'normal' or 'full', got 'fast' (a string)",
      ],
    ] as const) {
      await expect(DbmStore.probe(options as never)).rejects.toThrow(new TypeError(message));
    }
    // open's own errors still name open.
    await expect(DbmStore.open({ path, sweepmode: 'full-scan' } as never)).rejects.toThrow(
      new TypeError("DbmStore.open: unknown option 'sweepmode'; did you mean 'sweepMode'?"),
    );
    expect(snapshot(dirname(path))).toEqual(before);
  });
});
