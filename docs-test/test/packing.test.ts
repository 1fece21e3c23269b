// A tarball packed by npm keeps `workspace:^` ranges, which no install resolves; every published
// package with such a dependency refuses to be packed by anything but pnpm (the root README says so).
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
const GUARD = 'node ../../scripts/pnpm-pack-only.mjs && ';

interface Manifest {
  name: string;
  private?: boolean;
  scripts?: Record<string, string>;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

const published = readdirSync(join(root, 'packages')).flatMap((dir) => {
  const manifest = JSON.parse(
    readFileSync(join(root, 'packages', dir, 'package.json'), 'utf8'),
  ) as Manifest;
  return manifest.private ? [] : [{ dir, manifest }];
});

const linksWorkspace = (manifest: Manifest) =>
  Object.values({
    ...manifest.dependencies,
    ...manifest.peerDependencies,
    ...manifest.optionalDependencies,
  }).some((range) => range.startsWith('workspace:'));

test('every published package with a workspace: dependency runs the pnpm-only guard before its build', () => {
  const linked = published.filter(({ manifest }) => linksWorkspace(manifest));
  expect(linked.length).toBeGreaterThan(10);
  for (const { manifest } of linked) {
    expect(manifest.scripts?.prepack, manifest.name).toBe(`${GUARD}pnpm run build`);
  }
});

test('npm pack of a package with a workspace: dependency fails, naming the dependency and pnpm pack', () => {
  const packed = spawnSync('npm', ['pack', '--dry-run'], {
    cwd: join(root, 'packages', 'sqlite'),
    encoding: 'utf8',
    env: { ...process.env, npm_config_user_agent: '' },
  });
  expect(packed.status).not.toBe(0);
  expect(packed.stderr).toContain('@sessile/sqlite depends on @sessile/core through workspace:');
  expect(packed.stderr).toContain('pnpm pack:packages');
});

test('under pnpm the guard lets the pack go on', () => {
  const guard = spawnSync('node', [join(root, 'scripts', 'pnpm-pack-only.mjs')], {
    cwd: join(root, 'packages', 'sqlite'),
    encoding: 'utf8',
    env: { ...process.env, npm_config_user_agent: 'pnpm/12.4.2 npm/? node/v20.20.2 linux x64' },
  });
  expect(guard.stderr).toBe('');
  expect(guard.status).toBe(0);
});
