// A store kept in one JSON file that every process on the host may open. Each step on the file
// runs under a host-wide mutex (a directory made with mkdir), and locks are lease rows in a second
// file. Its conditional writes are broken: they check for a live record in one step and write in
// another, and only a queue in this process keeps a second call on the id out in between. Plain
// JavaScript, since the suite's forked children import it.
import { mkdirSync, readFileSync, renameSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BaseStore, KeyedQueue, LeaseLocks, lockLost, yieldToEventLoop } from '@sessile/core/store';

const pause = new Int32Array(new SharedArrayBuffer(4));

function underMutex(directory, step) {
  const mutex = join(directory, 'mutex');
  for (;;) {
    try {
      mkdirSync(mutex);
      break;
    } catch (error) {
      if (error.code !== 'EEXIST') throw error;
      Atomics.wait(pause, 0, 0, 1);
    }
  }
  try {
    return step();
  } finally {
    rmdirSync(mutex);
  }
}

function readJson(path) {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    if (error.code === 'ENOENT') return {};
    throw error;
  }
}

function writeJson(path, value) {
  writeFileSync(`${path}.tmp`, JSON.stringify(value));
  renameSync(`${path}.tmp`, path);
}

class FileLeases {
  constructor(directory) {
    this.directory = directory;
    this.path = join(directory, 'leases.json');
  }
  #change(step) {
    return underMutex(this.directory, () => {
      const rows = readJson(this.path);
      const answer = step(rows);
      writeJson(this.path, rows);
      return answer;
    });
  }
  claim({ key, token, expiresAt }) {
    return this.#change((rows) => {
      if (rows[key] !== undefined && rows[key].expiresAt > Date.now()) return false;
      rows[key] = { token, expiresAt };
      return true;
    });
  }
  extend({ key, token, expiresAt }) {
    return this.#change((rows) => {
      if (rows[key]?.token !== token || rows[key].expiresAt <= Date.now()) return false;
      rows[key].expiresAt = expiresAt;
      return true;
    });
  }
  release({ key, token }) {
    return this.#change((rows) => {
      const row = rows[key];
      if (row?.token !== token) return false;
      delete rows[key];
      return row.expiresAt > Date.now();
    });
  }
  /** Whether `lease` still holds; called under the mutex. */
  holds({ key, token }) {
    const row = readJson(this.path)[key];
    return row?.token === token && row.expiresAt > Date.now();
  }
}

export class RacyFileStore extends BaseStore {
  capabilities = {
    shared: 'host',
    expiry: 'sweep',
    durable: false,
    expiryIndex: false,
    ownerIndex: false,
  };
  #queue = new KeyedQueue();

  constructor(directory) {
    super();
    mkdirSync(directory, { recursive: true });
    this.directory = directory;
    this.path = join(directory, 'sessions.json');
    this.leases = new FileLeases(directory);
    this.locks = new LeaseLocks(this.leases);
  }

  static async open(directory) {
    return new RacyFileStore(directory);
  }

  _get(id, now) {
    return this.#queue.run(id, async () => this.#read(id, now));
  }

  _set(id, record, only, now, lease) {
    const row = { data: Buffer.from(record.data).toString('base64'), expiresAt: record.expiresAt };
    return this.#queue.run(id, async () => {
      if (only !== undefined) {
        // The defect: the check and the write are two steps on the file.
        const exists = this.#read(id, now) !== undefined;
        if ((only === 'absent' && exists) || (only === 'present' && !exists)) return false;
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      return this.#change(lease, (rows) => {
        rows[id] = row;
        return true;
      });
    });
  }

  _touch(id, expiresAt, now, lease) {
    return this.#queue.run(id, async () =>
      this.#change(lease, (rows) => {
        if (rows[id] === undefined || rows[id].expiresAt <= now) return false;
        rows[id].expiresAt = expiresAt;
        return true;
      }),
    );
  }

  _delete(id, now, lease) {
    return this.#queue.run(id, async () =>
      this.#change(lease, (rows) => {
        const row = rows[id];
        delete rows[id];
        return row !== undefined && row.expiresAt > now;
      }),
    );
  }

  async _sweep(progress) {
    for (let batch = progress.nextBatchSize(100); batch > 0; batch = progress.nextBatchSize(100)) {
      const left = this.#change(undefined, (rows) => {
        const expired = Object.keys(rows).filter((id) => rows[id].expiresAt <= progress.now);
        const removed = expired.slice(0, batch);
        for (const id of removed) delete rows[id];
        progress.removed += removed.length;
        progress.scanned += removed.length;
        return expired.length - removed.length;
      });
      if (left === 0) return progress.result(true);
      await yieldToEventLoop();
    }
    return progress.result(false);
  }

  async _count(now) {
    return Object.values(readJson(this.path)).filter((row) => row.expiresAt > now).length;
  }

  async *_ids(now) {
    for (const [id, row] of Object.entries(readJson(this.path))) {
      if (row.expiresAt > now) yield id;
    }
  }

  async _clear() {
    this.#change(undefined, (rows) => {
      for (const id of Object.keys(rows)) delete rows[id];
    });
  }

  async _close() {}

  #read(id, now) {
    const row = readJson(this.path)[id];
    if (row === undefined || row.expiresAt <= now) return undefined;
    return { data: Buffer.from(row.data, 'base64'), expiresAt: row.expiresAt };
  }

  /** One step on the file under the mutex: a fenced one only while its lease holds. */
  #change(lease, step) {
    return underMutex(this.directory, () => {
      if (lease !== undefined && !this.leases.holds(lease)) throw lockLost();
      const rows = readJson(this.path);
      const answer = step(rows);
      writeJson(this.path, rows);
      return answer;
    });
  }
}
