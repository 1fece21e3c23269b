import { join } from 'node:path';
import {
  generateToken,
  type LeaseBackend,
  LeaseLock,
  LeaseLocks,
  lockLost,
  lockManagerClosed,
} from '@sessile/core/store';
import { errorCode, type FileSystem, overwriteText, unless } from './fs.js';

/** Lease files are padded to this size and rewritten in place (a lease is about 60 bytes). */
const LEASE_BYTES = 128;

/** Where a lease lives: its holder's token and when the lease ends. */
interface Lease {
  token: string;
  expiresAt: number;
}

function parseLease(text: string): Lease | undefined {
  try {
    const value = JSON.parse(text) as Partial<Lease>;
    if (typeof value.token === 'string' && typeof value.expiresAt === 'number') {
      return { token: value.token, expiresAt: value.expiresAt };
    }
  } catch {
    // A lease torn by a crash mid-write holds nothing.
  }
  return undefined;
}

/** Runs a read-modify-write of one lease file alone across the host. */
export interface LeaseFileGuards {
  run<T>(file: string, body: () => Promise<T>): Promise<T>;
}

export interface FileLocksInit {
  /** The directory that holds lease files, `<store path>/.locks`. */
  directory: string;
  /** The store's link(2) write guards: one link and one unlink around each lease change. */
  guards: LeaseFileGuards;
  fileMode: number;
  directoryMode: number;
  /** How lease files are read and written (thread pool or event loop). */
  fs: FileSystem;
  shardOf(id: string): string;
}

/**
 * Session locks shared by every process on the host (and NFS clients). A lock is a lease file
 * `<directory>/<shard>/<id>` holding `{ token, expiresAt }`; every read-modify-write of it
 * happens under the store's write guard on that file, so claim, extend, release and takeover
 * are atomic. A claim takes over a lease whose `expiresAt` has passed, so a crashed or stuck
 * holder blocks others for at most one lease.
 */
export class FileLocks extends LeaseLocks {
  readonly #leases: LeaseFiles;

  constructor(init: FileLocksInit) {
    const leases = new LeaseFiles(init);
    super(leases.backend());
    this.#leases = leases;
  }

  /**
   * One attempt at the lease in `file` (any path inside the store), for the store's own
   * single-runner jobs. Resolves `undefined` while someone else holds it.
   */
  async tryLease(file: string, leaseMs: number): Promise<LeaseLock | undefined> {
    if (this.closed) throw lockManagerClosed();
    const token = generateToken();
    const expiresAt = Date.now() + leaseMs;
    if (!(await this.#leases.claim(file, token, expiresAt))) return undefined;
    // The file stays after release, holding an ended lease: the next run rewrites it in place.
    return new LeaseLock({
      id: '',
      token,
      leaseMs,
      expiresAt,
      hooks: {
        extend: (heldToken, newExpiresAt) => this.#leases.extend(file, heldToken, newExpiresAt),
        release: (heldToken) => this.#leases.release(file, heldToken, true),
      },
    });
  }
}

/** Lease files: reading, claiming, extending and freeing them under a guard. */
class LeaseFiles {
  readonly #init: FileLocksInit;
  readonly #readyShards = new Set<string>();

  constructor(init: FileLocksInit) {
    this.#init = init;
  }

  /** The session locks' backend: lease files named by session id. */
  backend(): LeaseBackend {
    return {
      claim: async ({ key, token, expiresAt }) =>
        this.claim(await this.#leaseFile(key), token, expiresAt),
      extend: async ({ key, token, expiresAt }) =>
        this.extend(await this.#leaseFile(key), token, expiresAt),
      release: async ({ key, token }) => this.release(await this.#leaseFile(key), token, false),
      // The write runs under the lease file's guard, which every claim and takeover needs too.
      fence: async ({ key, token }, write) => {
        const file = await this.#leaseFile(key);
        let result: Awaited<ReturnType<typeof write>> | undefined;
        const held = await this.#whileHeld(file, token, async () => {
          result = await write();
        });
        if (!held) throw lockLost('its lease ran out or another holder took it over');
        return result as Awaited<ReturnType<typeof write>>;
      },
      // The lease file stays; the next claim sees it expired and takes over.
    };
  }

  /** Writes our lease when none is live; false while another holds it. */
  claim(file: string, token: string, expiresAt: number): Promise<boolean> {
    return this.#guarded(file, async () => {
      const current = await this.#read(file);
      if (current !== undefined && current.expiresAt > Date.now() && current.token !== token) {
        return false;
      }
      await this.#write(file, { token, expiresAt });
      return true;
    });
  }

  extend(file: string, token: string, expiresAt: number): Promise<boolean> {
    return this.#whileHeld(file, token, () => this.#write(file, { token, expiresAt }));
  }

  release(file: string, token: string, keepFile: boolean): Promise<boolean> {
    return this.#whileHeld(file, token, async () => {
      if (keepFile) await this.#write(file, { token: '', expiresAt: 0 });
      else await unless(['ENOENT'], undefined, () => this.#init.fs.unlink(file));
    });
  }

  async #leaseFile(id: string): Promise<string> {
    const shard = this.#init.shardOf(id);
    const directory = join(this.#init.directory, shard);
    if (!this.#readyShards.has(shard)) {
      await this.#init.fs.mkdir(directory, { recursive: true, mode: this.#init.directoryMode });
      this.#readyShards.add(shard);
    }
    return join(directory, id);
  }

  /** Runs `change` under the guard if the lease in `file` still holds `token`; false if not. */
  #whileHeld(file: string, token: string, change: () => Promise<void>): Promise<boolean> {
    return this.#guarded(file, async () => {
      const lease = await this.#read(file);
      if (lease?.token !== token || lease.expiresAt <= Date.now()) return false;
      await change();
      return true;
    });
  }

  async #guarded<T>(file: string, body: () => Promise<T>): Promise<T> {
    const { guards } = this.#init;
    try {
      return await guards.run(file, body);
    } catch (error) {
      // Someone (a sweep, an operator) removed the shard directory; recreate it once.
      if (errorCode(error) !== 'ENOENT') throw error;
      await this.#init.fs.mkdir(join(file, '..'), {
        recursive: true,
        mode: this.#init.directoryMode,
      });
      return guards.run(file, body);
    }
  }

  async #read(file: string): Promise<Lease | undefined> {
    const text = await unless(['ENOENT'], undefined, () => this.#init.fs.readText(file));
    return text === undefined ? undefined : parseLease(text);
  }

  #write(file: string, lease: Lease): Promise<void> {
    const { fs, fileMode } = this.#init;
    return overwriteText(fs, file, JSON.stringify(lease), LEASE_BYTES, fileMode);
  }
}
