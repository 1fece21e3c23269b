// Packs every published package the way `pnpm publish` does (prepack builds it) and checks what
// the tarballs hold. With --install it also installs them with npm into a scratch app, as a user
// would, and checks them from there: every package imports and requires, every code block of the
// READMEs and docs/ runs against them (the docs test), and a TypeScript file importing every
// package type-checks with `strict` and without `skipLibCheck`. Then it runs the root README's
// "Before the first release" commands as written, and the README's app in the app they make.
//
//   node scripts/check-packages.mjs [--install] [--keep]
import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const install = process.argv.includes('--install');
const keep = process.argv.includes('--keep');
const work = mkdtempSync(join(tmpdir(), 'sessile-packages-'));
const packs = join(work, 'packs');
const failures = [];
const fail = (message) => {
  failures.push(message);
  console.log(`  FAIL ${message}`);
};
const readJson = (path) => JSON.parse(readFileSync(path, 'utf8'));

const rootManifest = readJson(join(root, 'package.json'));
const license = readFileSync(join(root, 'LICENSE'), 'utf8');
// The workspace root and every project pnpm-workspace.yaml lists (`dir` or `dir/*`).
const globs = readFileSync(join(root, 'pnpm-workspace.yaml'), 'utf8')
  .split('\n')
  .map((line) => /^\s+-\s+['"]?([^'"]+)['"]?\s*$/.exec(line)?.[1])
  .filter((glob) => glob !== undefined);
const workspace = [
  { dir: root, manifest: rootManifest },
  ...globs
    .flatMap((glob) =>
      glob.endsWith('/*')
        ? readdirSync(join(root, glob.slice(0, -2))).map((name) =>
            join(root, glob.slice(0, -2), name),
          )
        : [join(root, glob)],
    )
    .filter((dir) => existsSync(join(dir, 'package.json')))
    .map((dir) => ({ dir, manifest: readJson(join(dir, 'package.json')) })),
];
const published = workspace.filter(({ manifest }) => !manifest.private);

console.log(`packing ${published.length} packages into ${packs}`);
execFileSync('pnpm', ['-r', '--filter', './packages/*', 'pack', '--pack-destination', packs], {
  cwd: root,
  stdio: ['ignore', 'ignore', 'inherit'],
});

const tarballs = [];
for (const { manifest } of published) {
  const file = join(
    packs,
    `${manifest.name.replace('@', '').replace('/', '-')}-${manifest.version}.tgz`,
  );
  tarballs.push(file);
  console.log(`${manifest.name}`);
  const entries = execFileSync('tar', ['-tzf', file], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
    .map((entry) => entry.replace(/^package\//, ''));
  const packed = JSON.parse(
    execFileSync('tar', ['-xzOf', file, 'package/package.json'], { encoding: 'utf8' }),
  );
  const packedLicense = entries.includes('LICENSE')
    ? execFileSync('tar', ['-xzOf', file, 'package/LICENSE'], { encoding: 'utf8' })
    : undefined;
  if (packedLicense !== license) fail(`${manifest.name}: LICENSE missing or not the root LICENSE`);
  for (const needed of ['README.md', 'package.json']) {
    if (!entries.includes(needed)) fail(`${manifest.name}: ${needed} missing`);
  }
  const targets = [
    packed.main,
    packed.types,
    ...Object.values(packed.exports ?? {}).flatMap((target) =>
      typeof target === 'string' ? [target] : Object.values(target),
    ),
  ];
  for (const target of new Set(targets.filter((t) => typeof t === 'string'))) {
    if (!entries.includes(target.replace(/^\.\//, '')))
      fail(`${manifest.name}: ${target} is exported but not packed`);
  }
  for (const entry of entries) {
    if (entry.endsWith('.tsbuildinfo')) fail(`${manifest.name}: ships ${entry}`);
    if (/(^|\/)test\//.test(entry)) fail(`${manifest.name}: ships ${entry}`);
  }
  const ranges = { ...packed.dependencies, ...packed.peerDependencies, ...packed.devDependencies };
  for (const [name, range] of Object.entries(ranges)) {
    if (String(range).startsWith('workspace:')) fail(`${manifest.name}: ${name} is ${range}`);
  }
  if (packed.engines?.node !== rootManifest.engines.node) {
    fail(
      `${manifest.name}: engines.node ${packed.engines?.node}, the workspace says ${rootManifest.engines.node}`,
    );
  }
  console.log(`  ${entries.length} files`);
}

console.log('private packages refuse to be packed');
for (const { dir, manifest } of workspace.filter(({ manifest }) => manifest.private)) {
  const packing = spawnSync('pnpm', ['pack', '--pack-destination', join(work, 'refused')], {
    cwd: dir,
    encoding: 'utf8',
  });
  if (packing.status === 0) fail(`${manifest.name}: pnpm pack packed a private package`);
  else console.log(`  ${manifest.name}: refused`);
}

if (install) {
  checkInstalled();
  checkReadmeInstall();
}

if (keep) console.log(`kept ${work}`);
else rmSync(work, { recursive: true, force: true });
console.log(failures.length === 0 ? 'packages OK' : `${failures.length} problem(s)`);
process.exitCode = failures.length === 0 ? 0 : 1;

function checkInstalled() {
  const app = join(work, 'app');
  mkdirSync(app);
  writeFileSync(
    join(app, 'package.json'),
    '{ "name": "scratch-app", "private": true, "type": "module" }\n',
  );
  // What the docs' examples import beside sessile, and TypeScript for the type check.
  const extras = [
    'express@5',
    'fastify@5',
    '@fastify/session@11',
    '@fastify/cookie@11',
    'better-sqlite3@12',
    'classic-level@3.0.0',
    '@types/express@5',
    'koa@3',
    '@types/koa@3',
    'koa-session@7',
    'hono@4',
    '@hono/node-server@2',
    'hono-sessions@0.8',
    `vitest@${rootManifest.devDependencies.vitest}`,
    `@types/node@${rootManifest.devDependencies['@types/node']}`,
    `typescript@${rootManifest.devDependencies.typescript}`,
  ];
  console.log(`npm install in ${app}`);
  const npm = spawnSync('npm', ['install', '--no-audit', '--no-fund', ...tarballs, ...extras], {
    cwd: app,
    stdio: 'inherit',
  });
  if (npm.status !== 0) return fail('npm install of the tarballs failed');

  // Every entry point of every package: `@sessile/conformance` and `@sessile/conformance/http`.
  const entryPoints = published.flatMap(({ manifest }) =>
    Object.keys(manifest.exports)
      .filter((subpath) => subpath !== './package.json')
      .map((subpath) => manifest.name + subpath.slice(1)),
  );
  console.log('each entry point imports, and requires');
  for (const entryPoint of entryPoints) {
    for (const [how, code] of [
      ['import', `await import(${JSON.stringify(entryPoint)})`],
      [
        'require',
        `(await import('node:module')).createRequire(import.meta.url)(${JSON.stringify(entryPoint)})`,
      ],
    ]) {
      const loaded = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
        cwd: app,
        encoding: 'utf8',
      });
      if (loaded.status !== 0)
        fail(`${how} ${entryPoint}: ${loaded.stderr.trim().split('\n').slice(0, 6).join('\n')}`);
    }
  }

  console.log('TypeScript strict, no skipLibCheck, a file importing every entry point');
  writeFileSync(
    join(app, 'tsconfig.json'),
    `${JSON.stringify(
      {
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          skipLibCheck: false,
          noEmit: true,
          types: ['node'],
        },
        files: ['check.ts'],
      },
      null,
      2,
    )}\n`,
  );
  writeFileSync(
    join(app, 'check.ts'),
    entryPoints
      .map(
        (entryPoint, i) => `import * as entry${i} from '${entryPoint}';\nconsole.log(entry${i});\n`,
      )
      .join(''),
  );
  const tsc = spawnSync(join(app, 'node_modules/.bin/tsc'), ['-p', app], {
    cwd: app,
    encoding: 'utf8',
  });
  // An error inside another package's types (say @types/koa against content-disposition's own
  // types) is the reader's with or without sessile: report it, but only sessile's fail the check.
  const errors = `${tsc.stdout}${tsc.stderr}`
    .split('\n')
    .filter((line) => /error TS\d+/.test(line));
  const foreign = errors.filter((line) => /^node_modules\/(?!@sessile\/)/.test(line));
  for (const line of foreign) console.log(`  not sessile's: ${line}`);
  if (tsc.status !== 0 && errors.length > foreign.length) fail(`tsc:\n${tsc.stdout}${tsc.stderr}`);

  console.log('the docs test, against the installed tarballs');
  const docs = spawnSync('pnpm', ['exec', 'vitest', 'run'], {
    cwd: join(root, 'docs-test'),
    env: { ...process.env, DOCS_TEST_NODE_MODULES: join(app, 'node_modules') },
    stdio: 'inherit',
  });
  if (docs.status !== 0) fail('the docs test failed against the installed tarballs');
}

/**
 * The root README's "Before the first release" commands after its packing, run as written from
 * the clone's parent directory, where `sessile/.packs` holds the tarballs just packed; then the
 * docs test runs the README's own code against the app those commands made, and nothing more.
 */
function checkReadmeInstall() {
  console.log("the README's install commands, as written");
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### Before the first release'));
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1];
  const lines = (block ?? '').replace(/\\\n/g, ' ').split('\n');
  const packing = lines.findIndex((line) => line.includes('pnpm pack:packages'));
  if (packing === -1)
    return fail('README: no sh block with pnpm pack:packages under Before the first release');
  const parent = join(work, 'readme');
  mkdirSync(join(parent, 'sessile'), { recursive: true });
  symlinkSync(packs, join(parent, 'sessile/.packs'), 'dir');
  const appDir = join(parent, 'app-dir');
  const commands = ['cd sessile', ...lines.slice(packing + 1), `pwd > '${appDir}'`].join('\n');
  const shell = spawnSync('sh', ['-e', '-c', commands], { cwd: parent, stdio: 'inherit' });
  if (shell.status !== 0) return fail(`the README's install commands failed:\n${commands}`);
  const app = readFileSync(appDir, 'utf8').trim();
  const docs = spawnSync('pnpm', ['exec', 'vitest', 'run', '-t', '^README\\.md '], {
    cwd: join(root, 'docs-test'),
    env: { ...process.env, DOCS_TEST_NODE_MODULES: join(app, 'node_modules') },
    stdio: 'inherit',
  });
  if (docs.status !== 0) fail("the README's code failed in the app its install commands made");
}
