import { cpSync, mkdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli, tempRoot } from './helpers.js';

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const nextDir = tempRoot('sessile-cli-install-');

/** The real directory of one of this package's installed dependencies. */
function installed(name: string): string {
  return realpathSync(join(packageRoot, 'node_modules', name));
}

/**
 * An app that installed @sessile/cli and its dependencies and nothing else: no store package and
 * no driver, the way npm would lay it out.
 */
let app: string;
let script: string;

beforeAll(() => {
  app = nextDir();
  const modules = join(app, 'node_modules');
  const cli = join(modules, '@sessile', 'cli');
  mkdirSync(cli, { recursive: true });
  cpSync(join(packageRoot, 'dist'), join(cli, 'dist'), { recursive: true });
  cpSync(join(packageRoot, 'package.json'), join(cli, 'package.json'));
  // Only what the CLI declares as dependencies: it runs with none of the stores or adapters.
  for (const name of ['@sessile/core', 'commander', 'cli-progress']) {
    mkdirSync(dirname(join(modules, name)), { recursive: true });
    symlinkSync(installed(name), join(modules, name), 'dir');
  }
  writeFileSync(join(app, 'package.json'), '{"type":"module"}');
  script = join(cli, 'dist', 'cli.js');
});

describe('a store package that is not installed', () => {
  it.each([
    ['sqlite:sessions.db', '@sessile/sqlite'],
    ['level:sessions', '@sessile/level'],
    ['file:sessions', '@sessile/file'],
    ['dbm:sessions.dbm', '@sessile/dbm'],
    ['redis://127.0.0.1:6379', '@sessile/redis'],
    ['postgres://postgres@127.0.0.1:5432/test', '@sessile/postgres'],
  ])('%s exits 3 and names %s, as a source and as a target', async (address, packageName) => {
    // copy asks the target's store about its place before it opens the source.
    for (const args of [
      ['stats', address],
      ['copy', '--from', 'sqlite:other.db', '--to', address],
    ]) {
      const result = await runCli(args, { script, cwd: app, env: { NODE_PATH: '' } });
      expect([args[0], result.code], result.stderr).toEqual([args[0], 3]);
      expect(result.stderr).toContain(`npm install ${packageName}`);
    }
  });

  it('a peer whose driver comes with a store package names that package', async () => {
    const peerFile = join(app, 'peer.db');
    writeFileSync(peerFile, '');
    // The target's package is there, as the import checks the target first.
    const target = join(app, 'node_modules', '@sessile', 'file');
    symlinkSync(installed('@sessile/file'), target, 'dir');
    const result = await runCli(
      ['import', '--from', `connect-sqlite3:${peerFile}`, '--to', 'file:sessions', '--json'],
      { script, cwd: app, env: { NODE_PATH: '' } },
    ).finally(() => rmSync(target));
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('better-sqlite3');
    expect(result.stderr).toContain('npm install @sessile/sqlite');
    expect(JSON.parse(result.stdout)).toMatchObject({ error: { code: 'ERR_PACKAGE_MISSING' } });
  });
});
