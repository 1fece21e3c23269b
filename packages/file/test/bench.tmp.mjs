import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateSessionId } from '@sessile/core';
import { FileStore } from '@sessile/file';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fs-bench-'));
const store = await FileStore.open({ path: dir });
const payload = new Uint8Array(300).fill(65);
const N = Number(process.argv[2] ?? 5000),
  IN = 64;
async function run(name, n, op) {
  let i = 0;
  const t = performance.now();
  await Promise.all(
    Array.from({ length: IN }, async () => {
      while (i < n) await op(i++);
    }),
  );
  const ms = performance.now() - t;
  console.log(name, Math.round((n / ms) * 1000), 'ops/s');
  return ms;
}
const ids = Array.from({ length: N }, generateSessionId);
const exp = () => Date.now() + 3600_000;
await run('create warmup', N, (i) =>
  store.set(generateSessionId(), { data: payload, expiresAt: exp() }, { only: 'absent' }),
);
await run('create(absent)', N, (i) =>
  store.set(ids[i], { data: payload, expiresAt: exp() }, { only: 'absent' }),
);
await run('read', N, (i) => store.get(ids[i]));
await run('update(present)', N, (i) =>
  store.set(ids[i], { data: payload, expiresAt: exp() }, { only: 'present' }),
);
await run('set(uncond)', N, (i) => store.set(ids[i], { data: payload, expiresAt: exp() }));
await run('touch', N, (i) => store.touch(ids[i], exp()));
await run('mixed 3r/1w', N, (i) =>
  i % 4 === 0
    ? store.set(ids[i], { data: payload, expiresAt: exp() }, { only: 'present' })
    : store.get(ids[i]),
);
await run('unknown get', N, () => store.get(generateSessionId()));
// bare write + rename of the same bytes
const bare = path.join(dir, 'bare');
fs.mkdirSync(bare);
const bytes = Buffer.alloc(24 + 43 + 300, 65);
const wf = fs.promises.writeFile,
  rn = fs.promises.rename;
await run('bare write+rename', N, async (i) => {
  const f = path.join(bare, ids[i]);
  await wf(f + '.tmp', bytes);
  await rn(f + '.tmp', f);
});
await run('bare readFile', N, async (i) => {
  await fs.promises.readFile(path.join(bare, ids[i]));
});
await store.close();
fs.rmSync(dir, { recursive: true });
