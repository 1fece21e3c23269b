import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function sources(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? sources(join(directory, entry.name))
      : entry.name.endsWith('.ts')
        ? [readFileSync(join(directory, entry.name), 'utf8')]
        : [],
  );
}

it('every error code the CLI gives its own failures is in the README, which scripts branch on', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Error codes'));
  // `new CliError(message, exit, 'ERR_…')` and `usageError`'s: the codes the CLI makes itself.
  const made = new Set(
    sources(join(root, 'src')).flatMap((text) =>
      [...text.matchAll(/EXIT\.\w+,\s*'(ERR_[A-Z_]+)'|new CliError\([^;]*?'(ERR_[A-Z_]+)'/gs)].map(
        (match) => (match[1] ?? match[2]) as string,
      ),
    ),
  );
  expect([...made].sort()).toEqual(
    expect.arrayContaining(['ERR_FAILED', 'ERR_NOT_FOUND', 'ERR_NOT_PEER_DATA', 'ERR_USAGE']),
  );
  for (const code of made) expect(section, code).toContain(`\`${code}\``);
});
