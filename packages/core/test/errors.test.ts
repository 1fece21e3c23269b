import { mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { generateSessionId, isSessionError } from '../src/index.js';
import { toStoreIoError } from '../src/store.js';

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

describe('toStoreIoError', () => {
  it('leaves the paths of a failed system call, which may hold a session id, out of the message and keeps them in the cause', () => {
    const root = mkdtempSync(join(tmpdir(), 'sessile-errors-'));
    roots.push(root);
    const id = generateSessionId();
    const failed = thrownBy(() => renameSync(join(root, id), join(root, `${id}.moved`)));
    expect(String((failed as Error).message)).toContain(id);
    const wrapped = toStoreIoError(failed, `set on ${root}`);
    expect(isSessionError(wrapped, 'ERR_STORE_IO')).toBe(true);
    expect(wrapped.message).toBe(
      `set on ${root} failed: ENOENT: no such file or directory, rename`,
    );
    expect(wrapped.cause).toBe(failed);
  });

  it('keeps the whole message of an error that names no path', () => {
    const wrapped = toStoreIoError(new Error("near 'x': syntax error"), 'get');
    expect(wrapped.message).toBe("get failed: near 'x': syntax error");
  });
});
