import type { Stats } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { isSessionError, SessionError, type SessionRecord } from '@sessile/core';
import type { HostGuards } from '@sessile/core/store';
import { decodeHeader, decodePayload, MAX_FRAME_BYTES } from './format.js';
import { type FileSystem, unless } from './fs.js';
import type { StoreLayout } from './layout.js';
import { effectiveExpiresAt, type RecordFiles } from './record-files.js';

/** Reads of one record that found it replaced under them before `get` takes its guard. */
const READ_ATTEMPTS = 4;
/** What a wary read reports when its file was replaced (and maybe reused) while it read. */
const REPLACED = Symbol('replaced');

export function corruptRecord(reason: string): SessionError {
  return new SessionError('ERR_CORRUPT_RECORD', `Session record file is damaged: ${reason}`);
}

export interface RecordReadsInit {
  layout: StoreLayout;
  fs: FileSystem;
  files: RecordFiles;
  guards: HostGuards;
  /** A read that took this long may have read a reused file (see `reuseAfterMs`). */
  reuseAfterMs: number;
  maxRecordBytes: () => number;
}

/**
 * `get`: reads a record file without a guard, and trusts what it read only when the file
 * cannot have been replaced (and its inode reused) in the meantime.
 */
export class RecordReads {
  readonly #layout: StoreLayout;
  readonly #fs: FileSystem;
  readonly #files: RecordFiles;
  readonly #guards: HostGuards;
  readonly #reuseAfterMs: number;
  readonly #maxRecordBytes: () => number;

  constructor(init: RecordReadsInit) {
    this.#layout = init.layout;
    this.#fs = init.fs;
    this.#files = init.files;
    this.#guards = init.guards;
    this.#reuseAfterMs = init.reuseAfterMs;
    this.#maxRecordBytes = init.maxRecordBytes;
  }

  async get(id: string, now: number): Promise<SessionRecord | undefined> {
    const file = this.#layout.recordPath(id);
    for (let attempt = 1; attempt <= READ_ATTEMPTS; attempt++) {
      const read = await this.#readOnce(id, file, now, true);
      if (read !== REPLACED) return read;
    }
    // Replaced under every attempt: read once more holding the record's guard, which every
    // writer takes, so the file cannot change while it is read.
    if (!(await this.#layout.shardExists(id))) return undefined;
    return this.#guards.run(file, async () => {
      const read = await this.#readOnce(id, file, now, false);
      return read === REPLACED ? undefined : read;
    });
  }

  /**
   * True when the record file at `file` fails the checks `get` makes (header, length, checksum);
   * false when it passes them, is another id's, is too large to read here, or is gone.
   */
  async damaged(id: string, file: string): Promise<boolean> {
    const found = await this.#fs.readStart(file, MAX_FRAME_BYTES + this.#maxRecordBytes());
    if (found?.bytes === undefined) return false;
    try {
      this.#decodeRecord(id, found.stats, found.bytes, Number.NEGATIVE_INFINITY);
      return false;
    } catch (error) {
      return isSessionError(error, 'ERR_CORRUPT_RECORD');
    }
  }

  /**
   * One read of the record at `file`. With `wary` set, a file that may have been replaced while
   * it was read, its inode reused for another write (see reuseFiles), is reported as REPLACED
   * instead of trusted: bytes that look wrong, or that took longer than `reuseAfterMs` to read,
   * count only if the file is still the record's and has not changed.
   */
  async #readOnce(
    id: string,
    file: string,
    now: number,
    wary: boolean,
  ): Promise<SessionRecord | undefined | typeof REPLACED> {
    const started = performance.now();
    const found = await this.#fs.readStart(file, MAX_FRAME_BYTES + this.#maxRecordBytes());
    if (found === undefined) return undefined;
    if (!this.#layout.isVerified(id)) await this.#layout.verifyShard(id, false);
    const { stats, bytes } = found;
    if (bytes === undefined) return undefined;
    let read: SessionRecord | undefined | 'other-id' | SessionError;
    try {
      read = this.#decodeRecord(id, stats, bytes, now);
    } catch (error) {
      if (!(wary && isSessionError(error) && error.code === 'ERR_CORRUPT_RECORD')) throw error;
      read = error;
    }
    const doubtful =
      wary &&
      (read instanceof SessionError ||
        read === 'other-id' ||
        performance.now() - started >= this.#reuseAfterMs);
    if (doubtful && (await this.#replacedSince(file, stats))) return REPLACED;
    if (read instanceof SessionError) throw read;
    return read === 'other-id' ? undefined : read;
  }

  /** Checks the bytes of a record file; `'other-id'` when it is another id's. */
  #decodeRecord(
    id: string,
    stats: Stats,
    bytes: Buffer,
    now: number,
  ): SessionRecord | undefined | 'other-id' {
    if (stats.size > MAX_FRAME_BYTES + this.#maxRecordBytes()) {
      throw new SessionError(
        'ERR_RECORD_TOO_LARGE',
        `Stored record exceeds maxRecordBytes (${this.#maxRecordBytes()})`,
      );
    }
    const parsed = decodeHeader(id, bytes, this.#files.settings.caseSensitive);
    if (parsed.kind === 'other-id') return 'other-id';
    if (parsed.kind === 'corrupt') throw corruptRecord(parsed.reason);
    const payload = decodePayload(parsed.header, bytes);
    if (payload.kind === 'corrupt') throw corruptRecord(payload.reason);
    const expiresAt = effectiveExpiresAt(
      parsed.header.expiresAt,
      stats.mtimeMs,
      this.#files.settings.mtimeExact,
    );
    if (expiresAt <= now) return undefined;
    if (payload.owner === undefined) return { data: payload.data, expiresAt };
    return { data: payload.data, expiresAt, owner: payload.owner };
  }

  /**
   * True when `file` no longer names the inode that `read` (its stats when it was read) came
   * from, or that inode changed since: what was read from it may be another write's.
   */
  async #replacedSince(file: string, read: Stats): Promise<boolean> {
    const current = await unless(['ENOENT', 'ENOTDIR'], undefined, () => this.#fs.lstat(file));
    return (
      current === undefined ||
      current.ino !== read.ino ||
      current.dev !== read.dev ||
      current.ctimeMs !== read.ctimeMs
    );
  }
}
