import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isSessionError, type SessionRecord } from '@sessile/core';
import type { FileStore } from '@sessile/file';
import { afterAll, afterEach } from 'vitest';

export const HOUR_MS = 3_600_000;

/** A record holding `text`, live for an hour unless told. */
export function recordOf(text: string, expiresAt = Date.now() + HOUR_MS): SessionRecord {
  return { data: new TextEncoder().encode(text), expiresAt };
}

export function textOf(record: SessionRecord | undefined): string | undefined {
  return record === undefined ? undefined : new TextDecoder().decode(record.data);
}

/** `'ok'` when `promise` resolves, else its `SessionError` code (or the error as text). */
export async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'ok';
  } catch (error) {
    return isSessionError(error) ? error.code : String(error);
  }
}

/**
 * A temp directory (`root`) for one test file's stores, removed after the file, and the
 * `stores` and `children` its tests register, closed and killed after each test.
 * `freshPath()` names a new store directory in `root`.
 */
export function testDirectories(prefix: string): {
  root: string;
  stores: FileStore[];
  children: ChildProcess[];
  freshPath(): string;
} {
  const root = mkdtempSync(join(tmpdir(), prefix));
  // Tens of thousands of files: longer than a hook's default 10 s on a loaded machine.
  afterAll(() => rmSync(root, { recursive: true, force: true }), 120_000);
  const stores: FileStore[] = [];
  const children: ChildProcess[] = [];
  afterEach(async () => {
    for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
    for (const store of stores.splice(0)) await store.close();
  });
  let directories = 0;
  return { root, stores, children, freshPath: () => join(root, `store-${++directories}`) };
}
