import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, sep } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import {
  generateToken,
  type HostGuards,
  type LeaseFiles,
  type LeaseFilesInit,
  sleep,
} from '../src/store.js';
import {
  fillWithBytes,
  fillWithFiles,
  leaseFilesIn,
  mountSmallExt4,
  mountTmpfs,
  unmount,
} from './helpers.js';

// The machine is shared with other suites: allow slow runs; no test asserts on time.
vi.setConfig({ testTimeout: 60_000 });

const roots: string[] = [];
const opened: LeaseFiles[] = [];

afterEach(async () => {
  for (const files of opened.splice(0)) await files.close();
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
});

/**
 * An instance on the leases of `directory` with its own guards in `guardsDirectory`, as a
 * process has them; closed after the test.
 */
function openInstance(
  directory: string,
  guardsDirectory: string,
  options: Pick<LeaseFilesInit, 'wakeOnRelease' | 'storeDirectory'> = {},
): { files: LeaseFiles; guards: HostGuards } {
  const instance = leaseFilesIn(directory, guardsDirectory, options);
  opened.push(instance.files);
  return instance;
}

/**
 * A lease directory (in `under`, else in the temporary directory), and a way to open instances
 * on it as separate processes do (own guards).
 */
function leaseDirectory(under = tmpdir()): { directory: string; open(): LeaseFiles } {
  const root = mkdtempSync(join(under, 'sessile-lease-files-'));
  roots.push(root);
  const directory = join(root, 'leases');
  let instances = 0;
  return {
    directory,
    open: () =>
      openInstance(directory, join(root, `guards-${++instances}`), { wakeOnRelease: true }).files,
  };
}

/** A fresh lease directory whose key `k` one instance, `first`, has just claimed for `leaseMs`. */
async function claimedKey(leaseMs: number) {
  const { directory, open } = leaseDirectory();
  const first = open();
  const path = join(directory, 'k');
  const token = generateToken();
  const expiresAt = Date.now() + leaseMs;
  expect(await first.claimAt(path, token, expiresAt)).toBe('claimed');
  return { directory, open, first, path, token, expiresAt };
}

/** This process's file descriptors and what each one opens, from `/proc/self/fd` (Linux). */
function openFiles(): { fd: string; target: string }[] {
  const found: { fd: string; target: string }[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      found.push({ fd, target: readlinkSync(`/proc/self/fd/${fd}`) });
    } catch {
      // The descriptor readdir itself used, closed by now.
    }
  }
  return found;
}

/** How many inotify watches this process has on `directory` (Linux `/proc/self/fdinfo`). */
function watchesOn(directory: string): number {
  const inode = `ino:${statSync(directory).ino.toString(16)} `;
  let count = 0;
  for (const { fd, target } of openFiles()) {
    if (!target.includes('inotify')) continue;
    const info = readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1');
    for (const line of info.split('\n')) {
      if (line.startsWith('inotify wd:') && line.includes(inode)) count++;
    }
  }
  return count;
}

/** What this process's file descriptors open inside `directory`. */
function openFilesIn(directory: string): string[] {
  return openFiles()
    .map(({ target }) => target)
    .filter((target) => target.startsWith(directory + sep));
}

function claim(key: string, leaseMs: number) {
  return { key, id: key, token: generateToken(), expiresAt: Date.now() + leaseMs, waited: false };
}

describe('LeaseFiles', () => {
  it('watches the directory only while a refused claim waits, and wakes it on release', async () => {
    const { directory, open } = leaseDirectory();
    const holder = open();
    const waiter = open();

    // An uncontended claim with a waker registered opens no watch.
    const first = claim('k', 60_000);
    const unwatchFirst = waiter.watch('k', () => {});
    expect(await waiter.claim(first)).toBe(true);
    expect(watchesOn(directory)).toBe(0);
    unwatchFirst();
    expect(await waiter.release(first)).toBe(true);

    const held = claim('k', 60_000);
    expect(await holder.claim(held)).toBe(true);
    let wake = () => {};
    const woken = new Promise<void>((resolve) => {
      wake = resolve;
    });
    const unwatch = waiter.watch('k', () => wake());
    expect(watchesOn(directory)).toBe(0);
    expect(await waiter.claim(claim('k', 60_000))).toBe(false);
    expect(watchesOn(directory)).toBe(1);

    expect(await holder.release(held)).toBe(true);
    await woken;
    // Leave the watch's event callback first: libuv removes an inotify watch only outside it.
    await new Promise((resolve) => setImmediate(resolve));
    const next = claim('k', 60_000);
    expect(await waiter.claim(next)).toBe(true);

    // Nobody waits any more: the directory watch is closed.
    unwatch();
    expect(watchesOn(directory)).toBe(0);
    expect(await waiter.release(next)).toBe(true);
  });

  it('answers at once whether a lease is still held, from whether its lease file is still its holder file', async () => {
    const { directory, open } = leaseDirectory();
    const files = open();
    const lease = claim('k', 1500);
    expect(await files.claim(lease)).toBe(true);
    const path = join(directory, 'k');
    expect(files.holdsAtSync(path, lease.token)).toBe(true);
    expect(files.holdsAtSync(path, generateToken())).toBe(false);
    // Inside the last half of a short lease, the holder must still be linked as the lease file.
    await sleep(lease.expiresAt - Date.now() - 500);
    expect(files.holdsAtSync(path, lease.token)).toBe(true);
    rmSync(path);
    expect(files.holdsAtSync(path, lease.token)).toBe(false);
  });

  it('frees the key for another holder on a release well inside the lease', async () => {
    const { directory, open } = leaseDirectory();
    const first = open();
    const second = open();
    const path = join(directory, 'k');
    const token = generateToken();
    expect(await first.claimAt(path, token, Date.now() + 60_000)).toBe('claimed');
    expect(await second.claimAt(path, generateToken(), Date.now() + 60_000)).toBe('refused');
    expect(await first.releaseAt(path, token)).toBe(true);
    expect(await second.claimAt(path, generateToken(), Date.now() + 60_000)).toBe('claimed');
  });

  it('reports the loss on a release of a lease taken over after its end', async () => {
    const { directory, open } = leaseDirectory();
    const first = open();
    const second = open();
    const path = join(directory, 'k');
    const lost = generateToken();
    expect(await first.claimAt(path, lost, Date.now() + 50)).toBe('claimed');
    await sleep(100);
    const taken = generateToken();
    expect(await second.claimAt(path, taken, Date.now() + 60_000)).toBe('reclaimed');
    expect(await first.releaseAt(path, lost)).toBe(false);
    // The late release left the new holder's lease in place.
    expect(await first.claimAt(path, generateToken(), Date.now() + 60_000)).toBe('refused');
    expect(await second.releaseAt(path, taken)).toBe(true);
  });

  it('reports the loss on a release after the lease directory was removed', async () => {
    const { directory, open, first, path, token } = await claimedKey(60_000);
    rmSync(directory, { recursive: true, force: true });
    expect(await first.releaseAt(path, token)).toBe(false);
    expect(await open().claimAt(path, generateToken(), Date.now() + 60_000)).toBe('claimed');
  });

  for (const [moved, moveAway] of [
    ['removed', (directory: string) => rmSync(directory, { recursive: true, force: true })],
    ['replaced', (directory: string) => renameSync(directory, `${directory}.old`)],
  ] as const) {
    for (const [when, leaseMs, leftMs] of [
      ['well inside the lease', 60_000, 60_000],
      ['near the lease end', 1500, 400],
    ] as const) {
      it(`leaves the lease of whoever claimed the key after the lease directory was ${moved}, on a release ${when}`, async () => {
        const { directory, open, first, path, token: lost, expiresAt } = await claimedKey(leaseMs);
        moveAway(directory);
        const second = open();
        const taken = generateToken();
        expect(await second.claimAt(path, taken, Date.now() + 60_000)).toBe('claimed');
        await sleep(Math.max(0, expiresAt - leftMs - Date.now()));
        expect(await first.releaseAt(path, lost)).toBe(false);
        // The second holder's lease is still in place: nobody else gets the key.
        expect(await open().claimAt(path, generateToken(), Date.now() + 60_000)).toBe('refused');
        expect(await second.releaseAt(path, taken)).toBe(true);
        expect(await open().claimAt(path, generateToken(), Date.now() + 60_000)).toBe('claimed');
      });
    }
  }

  it('two releases of one lease at once (its end, and its holder) free its holder file once: later leases each keep their own record', async () => {
    const { directory, first: files, path, token, expiresAt } = await claimedKey(200);
    await sleep(expiresAt - Date.now() + 10);
    const released = await Promise.all([
      files.releaseAt(path, token),
      files.releaseAt(path, token),
    ]);
    expect(released).toEqual([false, false]);
    const tokens = { a: generateToken(), b: generateToken(), c: generateToken() };
    for (const [key, held] of Object.entries(tokens)) {
      expect(await files.claimAt(join(directory, key), held, Date.now() + 60_000)).toBe('claimed');
    }
    for (const [key, held] of Object.entries(tokens)) {
      expect(JSON.parse(readFileSync(join(directory, key), 'latin1')).token).toBe(held);
      expect(await files.releaseAt(join(directory, key), held)).toBe(true);
    }
  });

  it('refuses to extend a lease whose directory was replaced since, and leaves the new holder', async () => {
    const { directory, open, first, path, token: lost } = await claimedKey(60_000);
    renameSync(directory, `${directory}.old`);
    const second = open();
    const taken = generateToken();
    expect(await second.claimAt(path, taken, Date.now() + 60_000)).toBe('claimed');
    expect(await first.extendAt(path, lost, Date.now() + 60_000)).toBe(false);
    expect(await second.extendAt(path, taken, Date.now() + 60_000)).toBe(true);
    expect(await second.releaseAt(path, taken)).toBe(true);
  });

  it('close() frees the leases still held and closes their holder files: others claim them at once, and a later release resolves', async () => {
    const { directory, open } = leaseDirectory();
    const files = open();
    const [released, extended] = [join(directory, 'a'), join(directory, 'b')];
    const tokens = [generateToken(), generateToken()] as const;
    expect(await files.claimAt(released, tokens[0], Date.now() + 600_000)).toBe('claimed');
    expect(await files.claimAt(extended, tokens[1], Date.now() + 600_000)).toBe('claimed');
    await files.close();
    expect(openFilesIn(dirname(directory))).toEqual([]);
    expect(await files.releaseAt(released, tokens[0])).toBe(true);
    expect(await files.extendAt(extended, tokens[1], Date.now() + 600_000)).toBe(false);
    expect(openFilesIn(dirname(directory))).toEqual([]);
    const next = open();
    expect(await next.claimAt(released, generateToken(), Date.now() + 60_000)).toBe('claimed');
    expect(await next.claimAt(extended, generateToken(), Date.now() + 60_000)).toBe('claimed');
  });

  it('makes its holder files again when they are removed, and never writes through one it closed', async () => {
    const { directory, open } = leaseDirectory();
    const files = open();
    const guards = join(directory, '..', 'guards-1');
    const claim = (key: string) =>
      files.claimAt(join(directory, key), generateToken(), Date.now() + 60_000);
    // A claim released leaves its holder open for the next one.
    const token = generateToken();
    expect(await files.claimAt(join(directory, 'a'), token, Date.now() + 60_000)).toBe('claimed');
    expect(await files.releaseAt(join(directory, 'a'), token)).toBe(true);
    // Holder files removed (an operator's cleanup), and for a while none can be made again.
    rmSync(guards, { recursive: true, force: true });
    writeFileSync(guards, 'in the way');
    await expect(claim('b')).rejects.toThrow();
    // The app opens a file of its own, which may get the number of a descriptor the claim closed.
    const victim = join(directory, '..', 'victim.json');
    const fd = openSync(victim, 'w+');
    writeSync(fd, '{"keep":"this"}');
    rmSync(guards);
    expect(await claim('c')).toBe('claimed');
    expect(await claim('d')).toBe('claimed');
    closeSync(fd);
    expect(readFileSync(victim, 'utf8')).toBe('{"keep":"this"}');
    // A removed directory alone is made again within the same claim.
    rmSync(guards, { recursive: true, force: true });
    expect(await claim('e')).toBe('claimed');
  });

  it('makes a removed lock directory, holder files and all, again inside its parent, and names it once the parent is gone', async () => {
    const root = mkdtempSync(join(tmpdir(), 'sessile-lease-files-'));
    roots.push(root);
    // The dbm store's layout: lease files and the holders' directory in one lock directory.
    const store = join(root, 'store');
    const locks = join(store, 'sessions.db.locks');
    mkdirSync(locks, { recursive: true });
    const instance = (name: string) =>
      openInstance(locks, join(locks, name), { storeDirectory: store }).files;
    const files = instance('holders-1');
    const lease = join(locks, '0.lock');
    const stripe = join(locks, 'stripes', '1.lock');
    for (let round = 0; round < 2; round++) {
      const tokens = [generateToken(), generateToken()];
      expect(await files.claimAt(lease, tokens[0] as string, Date.now() + 60_000)).toBe('claimed');
      expect(await files.claimAt(stripe, tokens[1] as string, Date.now() + 60_000)).toBe('claimed');
      expect(await files.releaseAt(lease, tokens[0] as string)).toBe(true);
      expect(await files.releaseAt(stripe, tokens[1] as string)).toBe(true);
      // An operator (or a tmp cleaner) removes the lock directory between two claims.
      rmSync(locks, { recursive: true, force: true });
    }
    const token = generateToken();
    expect(await files.claimAt(stripe, token, Date.now() + 60_000)).toBe('claimed');
    // The lease is real: another process is refused it.
    expect(await instance('holders-2').claimAt(stripe, generateToken(), Date.now() + 60_000)).toBe(
      'refused',
    );
    expect(await files.releaseAt(stripe, token)).toBe(true);

    // The store's own directory removed: not brought back, and the claim says what is missing.
    rmSync(store, { recursive: true, force: true });
    const error = await files.claimAt(lease, generateToken(), Date.now() + 60_000).then(
      () => undefined,
      (failure: unknown) => failure as Error & { cause?: { code?: string } },
    );
    expect(error?.message).toContain(locks);
    expect(error?.cause?.code).toBe('ENOENT');
    expect(readdirSync(root)).toEqual([]);
  });

  it("never makes the store's own directory again for a lease file at its top level once it was deleted", async () => {
    const root = mkdtempSync(join(tmpdir(), 'sessile-lease-files-'));
    roots.push(root);
    // The file store's layout: its sweep lease sits in the store's directory, beside `.guards`.
    const store = join(root, 'store');
    mkdirSync(store);
    const { files } = openInstance(join(store, '.locks'), join(store, '.guards'), {
      storeDirectory: store,
    });
    const lease = join(store, '.sweep-lease');
    const token = generateToken();
    expect(await files.claimAt(lease, token, Date.now() + 60_000)).toBe('claimed');
    expect(await files.releaseAt(lease, token)).toBe(true);

    rmSync(store, { recursive: true, force: true });
    const error = await files.claimAt(lease, generateToken(), Date.now() + 60_000).then(
      () => undefined,
      (failure: unknown) => failure as Error & { cause?: { code?: string } },
    );
    expect(error?.message).toContain(store);
    expect(error?.cause?.code).toBe('ENOENT');
    expect(readdirSync(root)).toEqual([]);
  });
});

describe('LeaseFiles on a full disk', () => {
  const mounts: string[] = [];
  afterAll(() => {
    for (const dir of mounts.splice(0)) unmount(dir);
  });

  /** Lets an instance finish making its spare holder files (synchronous calls, so one turn). */
  const prepared = () => new Promise((resolve) => setImmediate(resolve));

  it('takes, extends and frees bare leases where no record fits, which other instances respect until their end', async () => {
    const dir = mountTmpfs('size=1m');
    mounts.push(dir);
    fillWithBytes(dir);
    // Instances made on the full disk: none of their holder files has a block for a record.
    const { directory, open } = leaseDirectory(dir);
    const first = open();
    const second = open();
    const path = join(directory, 'k');
    const token = generateToken();
    const endsAt = Date.now() + 60_000;
    expect(await first.claimAt(path, token, endsAt)).toBe('claimed');
    // A bare lease: no bytes, and its end in its mtime.
    expect(statSync(path).size).toBe(0);
    expect(statSync(path).mtimeMs).toBeCloseTo(endsAt, 0);
    expect(await second.claimAt(path, generateToken(), Date.now() + 60_000)).toBe('refused');
    const laterEndsAt = Date.now() + 120_000;
    expect(await first.extendAt(path, token, laterEndsAt)).toBe(true);
    expect(statSync(path).mtimeMs).toBeCloseTo(laterEndsAt, 0);
    expect(await first.fenceAt(path, token, async () => 'written')).toBe('written');
    expect(await first.releaseAt(path, token)).toBe(true);
    const next = generateToken();
    expect(await second.claimAt(path, next, Date.now() + 60_000)).toBe('claimed');
    expect(await second.releaseAt(path, next)).toBe(true);

    // A bare lease that ended is taken over, and its holder learns it lost the lease.
    const lost = generateToken();
    expect(await first.claimAt(path, lost, Date.now() + 50)).toBe('claimed');
    await sleep(100);
    const taken = generateToken();
    expect(await second.claimAt(path, taken, Date.now() + 60_000)).toBe('reclaimed');
    await expect(first.fenceAt(path, lost, async () => 'written')).rejects.toMatchObject({
      code: 'ERR_LOCK_LOST',
    });
    expect(await first.releaseAt(path, lost)).toBe(false);
    expect(await first.claimAt(path, generateToken(), Date.now() + 60_000)).toBe('refused');
    expect(await second.releaseAt(path, taken)).toBe(true);
  });

  it('claims on a full disk reuse holder files made while there was room, so a lease still names its holder', async () => {
    const dir = mountTmpfs('size=1m');
    mounts.push(dir);
    const { directory, open } = leaseDirectory(dir);
    const files = open();
    await prepared();
    fillWithBytes(dir);
    const tokens = [generateToken(), generateToken()];
    const paths = [join(directory, 'a'), join(directory, 'b')];
    const endsAt = Date.now() + 60_000;
    expect(await files.claimAt(paths[0] as string, tokens[0] as string, endsAt)).toBe('claimed');
    expect(await files.claimAt(paths[1] as string, tokens[1] as string, endsAt)).toBe('claimed');
    for (const [i, path] of paths.entries()) {
      // The record, with the process that a crash would free the lease by.
      expect(JSON.parse(readFileSync(path, 'latin1'))).toMatchObject({
        token: tokens[i],
        expiresAt: endsAt,
        pid: process.pid,
      });
      expect(await files.releaseAt(path, tokens[i] as string)).toBe(true);
    }
  });

  it('claims and guards on a disk with no inode left (ext4), with holder files made while there was one', async () => {
    const dir = mountSmallExt4(64);
    mounts.push(dir);
    const { directory } = leaseDirectory(dir);
    const { files, guards } = openInstance(directory, join(dir, 'guards'));
    mkdirSync(directory);
    await prepared();
    fillWithFiles(dir);
    // A process that has taken no guard and no lease yet: its holder files exist already.
    expect(await guards.run(join(dir, 'record'), async () => 'ran under the guard')).toBe(
      'ran under the guard',
    );
    const lease = (key: string) => ({ path: join(directory, key), token: generateToken() });
    const [k, l, m] = [lease('k'), lease('l'), lease('m')];
    expect(await files.claimAt(k.path, k.token, Date.now() + 60_000)).toBe('claimed');
    expect(await files.claimAt(l.path, l.token, Date.now() + 60_000)).toBe('claimed');
    // Holder files made ahead run out; then a claim needs a new inode.
    await expect(files.claimAt(m.path, m.token, Date.now() + 60_000)).rejects.toMatchObject({
      code: 'ENOSPC',
    });
    expect(await files.extendAt(k.path, k.token, Date.now() + 120_000)).toBe(true);
    expect(await files.releaseAt(k.path, k.token)).toBe(true);
    expect(await files.claimAt(m.path, m.token, Date.now() + 60_000)).toBe('claimed');
    expect(await files.releaseAt(l.path, l.token)).toBe(true);
    expect(await files.releaseAt(m.path, m.token)).toBe(true);
    await files.close();
    await guards.close();
  });
});
