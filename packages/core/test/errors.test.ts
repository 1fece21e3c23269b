import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import {
  generateSessionId,
  isSessionError,
  MemoryStore,
  type SessionError,
  type SessionRecord,
} from '../src/index.js';
import { LeaseLocks, REDACTED, toStoreIoError } from '../src/store.js';
import { leaseFilesIn } from './helpers.js';

const roots: string[] = [];
afterEach(() => {
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
});

function thrownBy(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  throw new Error('did not throw');
}

/** Everything a log line of `error` can show: messages, stacks, causes and their properties. */
function logged(error: unknown): string {
  return inspect(error, { depth: 8, showHidden: true });
}

function temporaryRoot(): string {
  const root = mkdtempSync(join(tmpdir(), 'sessile-errors-'));
  roots.push(root);
  return root;
}

/**
 * A MemoryStore that first writes each record to a temp file named after its id in a shard
 * directory of `directory`, as a file store does; it names `directory` as its location when
 * `named` is set.
 */
class TempFileStore extends MemoryStore {
  constructor(
    readonly directory: string,
    readonly named: boolean,
  ) {
    super();
  }

  protected override ioLocation(): string | undefined {
    return this.named ? this.directory : undefined;
  }

  protected override async _set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
  ): Promise<boolean> {
    const shard = join(this.directory, id.slice(0, 2));
    const temp = join(shard, `${id}.${randomBytes(4).toString('hex')}.tmp`);
    await writeFile(temp, record.data);
    await rename(temp, join(shard, id));
    return super._set(id, record, only, now);
  }
}

describe('toStoreIoError', () => {
  it('leaves the paths of a failed system call out of the message, and the session id out of the cause, which keeps the rest', () => {
    const root = temporaryRoot();
    const id = generateSessionId();
    const failed = thrownBy(() =>
      renameSync(join(root, id), join(root, `${id}.moved`)),
    ) as NodeJS.ErrnoException;
    expect(failed.message).toContain(id);
    const wrapped = toStoreIoError(failed, `set on ${root}`);
    expect(isSessionError(wrapped, 'ERR_STORE_IO')).toBe(true);
    expect(wrapped.message).toBe(
      `set on ${root} failed: ENOENT: no such file or directory, rename`,
    );
    const from = join(root, REDACTED);
    const to = join(root, `${REDACTED}.moved`);
    expect(wrapped.cause).toBeInstanceOf(Error);
    expect(wrapped.cause).toMatchObject({
      message: `ENOENT: no such file or directory, rename '${from}' -> '${to}'`,
      code: 'ENOENT',
      errno: failed.errno,
      syscall: 'rename',
      path: from,
      dest: to,
    });
    expect(logged(wrapped)).not.toContain(id);
  });

  it('keeps an error that holds no id-shaped name as the cause itself', () => {
    const root = temporaryRoot();
    const failed = thrownBy(() => renameSync(join(root, 'a'), join(root, 'b')));
    expect(toStoreIoError(failed, 'set').cause).toBe(failed);
  });

  it("keeps the store's location and its parents in the cause, however they are named", () => {
    const root = temporaryRoot();
    const location = join(root, 'sessions_of_the_production_site');
    const failed = thrownBy(() => renameSync(location, `${location}_moved`));
    const wrapped = toStoreIoError(failed, `open on ${location}`, { location });
    expect(wrapped.cause).toBe(failed);
  });

  it('keeps the whole message of an error that names no path', () => {
    const wrapped = toStoreIoError(new Error("near 'x': syntax error"), 'get');
    expect(wrapped.message).toBe("get failed: near 'x': syntax error");
  });
});

describe('ERR_STORE_IO from a store that names its files after session ids', () => {
  it('shows no id in its message or cause, names the directory, and keeps the errno', async () => {
    for (const named of [true, false]) {
      const root = temporaryRoot();
      const store = new TempFileStore(root, named);
      const id = generateSessionId();
      // The id's shard is a file: writing the temp file fails with ENOTDIR.
      writeFileSync(join(root, id.slice(0, 2)), '');
      const error = (await store
        .set(id, { data: new Uint8Array([1]), expiresAt: Date.now() + 60_000 })
        .catch((caught: unknown) => caught)) as SessionError;
      expect(isSessionError(error, 'ERR_STORE_IO')).toBe(true);
      expect(error.message).toBe(
        `set${named ? ` on ${root}` : ''} failed: ENOTDIR: not a directory, open`,
      );
      const cause = error.cause as NodeJS.ErrnoException;
      expect(cause).toMatchObject({ code: 'ENOTDIR', syscall: 'open' });
      expect(cause.path).toMatch(
        new RegExp(`^${join(root, id.slice(0, 2), REDACTED)}\\.[0-9a-f]{8}\\.tmp$`),
      );
      expect(logged(error)).not.toContain(id);
      await store.close();
    }
  });

  it('shows no id from a lock on lease files named after ids', async () => {
    for (const location of [undefined, 'root']) {
      const root = temporaryRoot();
      // The lease directory is a file: linking a lease into it fails with ENOTDIR.
      const leases = join(root, 'leases');
      writeFileSync(leases, '');
      mkdirSync(join(root, 'guards'));
      const { files, guards } = leaseFilesIn(leases, join(root, 'guards'));
      const locks = new LeaseLocks(files, location === undefined ? {} : { location: root });
      const id = generateSessionId();
      const error = (await locks
        .acquire(id, { waitMs: 0 })
        .catch((caught: unknown) => caught)) as SessionError;
      expect(isSessionError(error, 'ERR_STORE_IO')).toBe(true);
      expect(error.cause).toMatchObject({ code: 'ENOTDIR', dest: join(leases, REDACTED) });
      expect(logged(error)).not.toContain(id);
      // Closing the lock manager closes its LeaseFiles.
      await locks.close();
      await guards.close();
    }
  });
});
