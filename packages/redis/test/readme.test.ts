import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1] ?? '');

it("listens for 'error' on every node-redis connection the README's examples create", () => {
  // node-redis emits 'error' while a server is away (a Sentinel for its primary too), and an
  // 'error' event without a listener ends the process: an app that copies an example must not.
  const created: string[] = [];
  for (const block of blocks) {
    for (const [, name] of block.matchAll(/const (\w+) = create(?:Client|Cluster|Sentinel)\(/g)) {
      created.push(name as string);
      expect(block, `${name} has an error listener`).toContain(`${name}.on('error'`);
    }
  }
  expect(created.length).toBeGreaterThanOrEqual(3);
});
