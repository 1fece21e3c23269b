import type { SessionStore } from '@sessile/core';

/** How the suite reaches your store. Which tests run is decided by `store.capabilities`, not here. */
export interface ConformanceOptions {
  /** Shown in the test names. */
  name: string;
  /** A fresh, isolated, empty store. Called once per test; the suite closes it. */
  open(): Promise<SessionStore>;
  /**
   * The data of the latest `open()` again, after the suite has closed that store. Required
   * when the store declares `capabilities.durable`.
   */
  reopen?(): Promise<SessionStore>;
  /**
   * Required when the store declares `capabilities.shared` `'host'` or `'cluster'`, or
   * `capabilities.durable`: a durable store's crash test kills a child process writing to it.
   */
  crossProcess?: CrossProcessOptions;
  /**
   * Damages the stored bytes of `id` while `store` is open, the way a torn write or a bad disk
   * would. Without it the corrupt-record group does not run; every store that keeps encoded
   * bytes should give it.
   */
  corrupt?(store: SessionStore, id: string): Promise<void>;
  /**
   * A fresh store that keeps its data at `path` (which does not exist yet), on a small tmpfs
   * the suite mounts, so the suite must run as root. Without it the full-disk group does not
   * run; a store on a local disk should give it. The group fills the disk and expects
   * `ERR_STORE_IO` naming where the store is, every acknowledged write readable, and writes
   * that succeed again once there is room.
   */
  fullDisk?(path: string): Promise<SessionStore>;
  /** Multiplies the suite's waits and leases on slow machines. Default 1. */
  timeScale?: number;
  /**
   * Runs once after the whole suite, for a store whose data outlives `close()` on a server:
   * delete the test's keys, drop its schema. The suite's own stores are closed by then.
   */
  teardown?(): Promise<void>;
}

export interface CrossProcessOptions {
  /**
   * Absolute path or `file:` URL of an ES module that a forked child process imports. Its
   * default export opens the store at a location: `export default (location) => MyStore.open(...)`.
   * The child runs plain Node, so the module and what it imports must be built JavaScript
   * (import your package's `dist`, not its TypeScript sources).
   */
  module: string | URL;
  /** Where the latest `open()` keeps its data, as a string the module understands. */
  location(): string;
}
