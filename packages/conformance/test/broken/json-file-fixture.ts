import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SessionStore } from '@sessile/core';
import { afterAll } from 'vitest';
// The built suite: its crash tests fork dist/child.js, which the sources have no copy of.
import { runStoreConformance } from '../../dist/index.js';

/**
 * Runs the suite against a durable store kept in one JSON file (unsaved-touch-store.mjs), which
 * `childModule` opens in the suite's forked children.
 */
export async function runJsonFileStore(
  name: string,
  open: (path: string) => Promise<SessionStore>,
  childModule: URL,
): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), `sessile-${name}-`));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  let opened = 0;
  let path = '';
  await runStoreConformance({
    name,
    open: () => {
      path = join(root, `store-${++opened}.json`);
      return open(path);
    },
    reopen: () => open(path),
    crossProcess: { module: childModule, location: () => path },
  });
}
