// Every js, mjs and ts code block of README.md, packages/*/README.md and docs/*.md runs as
// written, each as its own ES module in a temp directory where the workspace packages resolve.
// ts blocks are type-checked with `strict` first, then compiled and run. A block that starts a
// server answers the requests of its entry in http-checks.ts. Type-checked only, never run:
// vitest test files (their first line names a `.test.` file; the packages' own tests run those
// suites), blocks that need a Redis or PostgreSQL server, and fragments marked in the markdown
// (blocks.ts).
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
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
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, describe, expect, test } from 'vitest';
import { type CodeBlock, documentedPages, RUN_LANGS, readBlocks } from './blocks.js';
import { DEFAULT_STEPS, HTTP_CHECKS, type Step } from './http-checks.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const fixtures = fileURLToPath(new URL('../fixtures/', import.meta.url));
// The packaging check points this at a scratch app that installed the packed tarballs.
const modules = resolve(process.env.DOCS_TEST_NODE_MODULES ?? join(root, 'docs-test/node_modules'));

const RUN_TIMEOUT_MS = 60_000;
// What the docs' examples read from the environment, as an app's deployment would set it.
const env = {
  ...process.env,
  SESSION_SECRET: randomBytes(32).toString('base64url'),
  SESSION_KEY: randomBytes(32).toString('base64'),
};
// The data directory the docs give servers; each block gets its own copy of it.
const SERVER_DATA_DIR = '/var/lib/myapp';
const NEEDS_A_SERVER = /from '(pg|redis|@sessile\/postgres|@sessile\/redis)'/;
const TEST_FILE = /^\/\/ \S+\.test\.[cm]?[jt]s\b/;

const pages = documentedPages(root);
const blocksByPage = new Map(pages.map((page) => [page, readBlocks(root, page)]));

const work = mkdtempSync(join(tmpdir(), 'sessile-docs-'));
symlinkSync(modules, join(work, 'node_modules'), 'dir');
writeFileSync(join(work, 'package.json'), '{ "type": "module" }\n');
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Why a block is type-checked and not run, or undefined when it runs. */
function typeCheckOnly(block: CodeBlock): string | undefined {
  if (block.mark?.kind === 'fragment') return 'a fragment';
  if (TEST_FILE.test(block.code)) return 'a vitest test file';
  if (NEEDS_A_SERVER.test(block.code)) return 'needs a Redis or PostgreSQL server';
  return undefined;
}

for (const page of pages) {
  const blocks = (blocksByPage.get(page) ?? []).filter((block) => RUN_LANGS.has(block.lang));
  if (blocks.length === 0) continue;
  describe(page, () => {
    for (const block of blocks) {
      const name = `${block.lang} block at line ${block.line}`;
      const why = typeCheckOnly(block);
      if (block.mark?.kind === 'skip') {
        // A block marked `<!-- doc-test: skip <reason> -->` is an excerpt that can neither run nor
        // type-check alone (a lone method, an elided call); it is reported as skipped, with the
        // page's reason in its name, so a reader of the results sees each one and why.
        test.skip(`${name}: ${block.mark.reason}`, () => {});
      } else if (why !== undefined) {
        test(`${name} type-checks (${why})`, () => {
          expect(typeErrors(block, preludeOf(block, blocks))).toEqual([]);
        });
      } else {
        test(`${name} runs`, async () => {
          if (block.lang === 'ts') expect(typeErrors(block)).toEqual([]);
          await run(block);
        });
      }
    }
  });
}

test('every HTTP check names exactly one code block', () => {
  for (const check of HTTP_CHECKS) {
    const matches = (blocksByPage.get(check.page) ?? []).filter((block) =>
      block.code.includes(check.contains),
    );
    expect(matches.length, `${check.page}: blocks containing ${check.contains}`).toBe(1);
  }
});

// Before the first release the README has a reader install tarballs by file name, which a version
// bump changes.
test("the README's tarballs are the ones pnpm pack:packages writes, @sessile/core's among them", () => {
  const manifests = readdirSync(join(root, 'packages'))
    .map((dir) => join(root, 'packages', dir, 'package.json'))
    .filter((file) => existsSync(file))
    .map((file) => JSON.parse(readFileSync(file, 'utf8')));
  const tarball = (manifest: { name: string; version: string }) =>
    `${manifest.name.replace('@', '').replace('/', '-')}-${manifest.version}.tgz`;
  const packed = new Set(manifests.filter((manifest) => !manifest.private).map(tarball));
  const script = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).scripts[
    'pack:packages'
  ];
  expect(script).toContain('--pack-destination .packs');
  const named = (blocksByPage.get('README.md') ?? [])
    .filter((block) => block.lang === 'sh')
    .flatMap((block) => [...block.code.matchAll(/\.packs\/([\w.-]+\.tgz)/g)].map((m) => m[1]));
  expect(named.filter((name) => !packed.has(name ?? ''))).toEqual([]);
  const core = manifests.find((manifest) => manifest.name === '@sessile/core');
  expect(named).toContain(tarball(core));
});

// Test files import the package their reader is writing, and skipped blocks are not run.
test('every page installs the @sessile packages its code imports', () => {
  for (const [page, blocks] of blocksByPage) {
    const installed = new Set<string>();
    const imported = new Set<string>();
    for (const block of blocks) {
      if (block.lang === 'sh') {
        for (const line of block.code.split('\n')) {
          if (/\b(pnpm add|npm install|npm i|yarn add)\b/.test(line)) {
            for (const name of line.match(/@sessile\/[\w-]+/g) ?? []) installed.add(name);
          }
        }
      }
      const app = block.mark?.kind !== 'skip' && !TEST_FILE.test(block.code);
      if (app && (RUN_LANGS.has(block.lang) || block.lang === 'diff')) {
        for (const match of block.code.matchAll(/from '(@sessile\/[\w-]+)/g))
          imported.add(match[1] ?? '');
      }
    }
    const missing = [...imported].filter((name) => !installed.has(name));
    expect(missing, `${page} imports these, but no install line of it names them`).toEqual([]);
  }
});

/** Where a package README links to the rest of the repository: relative links die in the tarball. */
const REPOSITORY_FILES = 'https://github.com/sessile/sessile/blob/main/';

test('every link of the pages into this repository points at a file and heading that exist', () => {
  const broken: string[] = [];
  for (const page of pages) {
    for (const [, target = ''] of prose(join(root, page)).matchAll(/\]\(([^)\s]+)\)/g)) {
      const inRepository = target.startsWith(REPOSITORY_FILES);
      if (!inRepository && /^[a-z]+:/.test(target)) continue;
      const [path = '', anchor] = (
        inRepository ? target.slice(REPOSITORY_FILES.length) : target
      ).split('#');
      const file = inRepository
        ? join(root, decodeURIComponent(path))
        : path === ''
          ? join(root, page)
          : join(root, page, '..', decodeURIComponent(path));
      if (!existsSync(file)) broken.push(`${page}: ${target}`);
      else if (anchor !== undefined && file.endsWith('.md') && !anchors(file).has(anchor)) {
        broken.push(`${page}: ${target} (no such heading)`);
      }
    }
  }
  expect(broken).toEqual([]);
});

// npm shows a package's README, and its tarball holds only that package: a link to another
// package or to docs/ must be a full address there.
test('package READMEs link outside their package by full address only', () => {
  const relative: string[] = [];
  for (const page of pages.filter((name) => /^packages\/[^/]+\/README\.md$/.test(name))) {
    for (const [, target = ''] of prose(join(root, page)).matchAll(/\]\(([^)\s]+)\)/g)) {
      if (target.startsWith('../')) relative.push(`${page}: ${target}`);
    }
  }
  expect(relative).toEqual([]);
});

/** A markdown file without its code blocks. */
function prose(file: string): string {
  return readFileSync(file, 'utf8').replace(/^```[\s\S]*?^```/gm, '');
}

/** The anchors GitHub gives a markdown file's headings. */
function anchors(file: string): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  for (const [, heading = ''] of prose(file).matchAll(/^#{1,6}\s+(.*)$/gm)) {
    const slug = heading
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    result.add(count === 0 ? slug : `${slug}-${count}`);
  }
  return result;
}

test('docs/writing-a-store.md prints the MapStore the conformance tests run', () => {
  const printed = blocksByPage
    .get('docs/writing-a-store.md')
    ?.find((block) => block.code.includes('class MapStore'));
  const tested = readFileSync(join(root, 'packages/conformance/test/example/map-store.ts'), 'utf8');
  expect(printed?.code).toBe(tested);
});

test("docs/writing-a-store.md's MapStore type-checks under tsc --init's stricter options, our declaration files included", () => {
  const block = blocksByPage
    .get('docs/writing-a-store.md')
    ?.find((candidate) => candidate.code.includes('class MapStore')) as CodeBlock;
  const file = join(blockDir(block), 'strict.ts');
  writeFileSync(file, block.code);
  // What `tsc --init` turns on, and our own .d.ts files checked (skipLibCheck off for them).
  const options: ts.CompilerOptions = {
    ...compilerOptions,
    exactOptionalPropertyTypes: true,
    noUncheckedIndexedAccess: true,
    verbatimModuleSyntax: true,
    skipLibCheck: false,
  };
  const program = ts.createProgram({ rootNames: [file], options });
  const ours = ts.getPreEmitDiagnostics(program).filter((diagnostic) => {
    const name = diagnostic.file?.fileName ?? file;
    return name === file || name.includes('/@sessile/');
  });
  expect(
    ours.map((diagnostic) => ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')),
  ).toEqual([]);
});

test('docs/examples/express-app.mjs --check passes', async () => {
  const child = spawn(process.execPath, [join(root, 'docs/examples/express-app.mjs'), '--check'], {
    cwd: work,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const { outcome, output } = await settle(child);
  expect(outcome, output()).toEqual({ exit: 0 });
});

// A container or service manager stops the app with SIGTERM: its temporary sessions go too.
test('docs/examples/express-app.mjs shuts down on SIGTERM and leaves no files behind', async () => {
  const temporary = join(work, 'example-sigterm-tmp');
  mkdirSync(temporary, { recursive: true });
  const child = spawn(process.execPath, [join(root, 'docs/examples/express-app.mjs')], {
    cwd: work,
    env: { ...env, PORT: '0', TMPDIR: temporary },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const settled = settle(child);
  await new Promise<void>((resolve) => {
    let printed = '';
    child.stdout?.on('data', (chunk) => {
      printed += chunk;
      if (printed.includes('sessile example on')) resolve();
    });
    child.once('exit', () => resolve());
  });
  child.kill('SIGTERM');
  const { outcome, output } = await settled;
  expect(outcome, output()).toEqual({ exit: 0 });
  expect(readdirSync(temporary)).toEqual([]);
});

/**
 * docs/examples/express-app.mjs as a reader copies it into an app: the plain imports its header
 * gives in place of the loader that borrows @sessile/express's dependencies.
 */
function exampleInAnApp(): string {
  const source = readFileSync(join(root, 'docs/examples/express-app.mjs'), 'utf8');
  const imports = [...source.matchAll(/^\/\/ {3}(import .+;)$/gm)].map((match) => match[1]);
  const lines = source
    .split('\n')
    .filter((line) => line !== "import { createRequire } from 'node:module';");
  const first = lines.findIndex((line) => line.startsWith('const packageRequire'));
  const last = lines.findLastIndex((line) => line.includes('await load('));
  expect(imports.length, 'the header names the imports').toBeGreaterThan(0);
  expect(first, 'the loader is there to replace').toBeGreaterThan(-1);
  lines.splice(first, last - first + 1, ...imports);
  return lines.join('\n');
}

// Without SESSION_KEY, as on a first run: the example makes a key with what its header imports.
test('docs/examples/express-app.mjs --check passes with the imports its header gives an app', async () => {
  const dir = join(work, 'example-app');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'app.mjs'), exampleInAnApp());
  const { SESSION_KEY: _key, ...withoutKey } = env;
  const child = spawn(process.execPath, [join(dir, 'app.mjs'), '--check'], {
    cwd: dir,
    env: withoutKey,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const { outcome, output } = await settle(child);
  expect(outcome, output()).toEqual({ exit: 0 });
});

// The header says any store serves the example: the embedded ones take the same path, and each
// store's files go when it exits.
test.each([
  ['SqliteStore', '@sessile/sqlite'],
  ['LevelStore', '@sessile/level'],
  ['FileStore', '@sessile/file'],
  ['DbmStore', '@sessile/dbm'],
])(
  'docs/examples/express-app.mjs --check passes on %s and leaves no files behind',
  async (store, name) => {
    const dir = join(work, `example-app-${store}`);
    const temporary = join(dir, 'tmp');
    mkdirSync(temporary, { recursive: true });
    const app = exampleInAnApp()
      .replaceAll('SqliteStore', store)
      .replaceAll("'@sessile/sqlite'", `'${name}'`);
    writeFileSync(join(dir, 'app.mjs'), app);
    const child = spawn(process.execPath, [join(dir, 'app.mjs'), '--check'], {
      cwd: dir,
      env: { ...env, TMPDIR: temporary },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const { outcome, output } = await settle(child);
    expect(outcome, output()).toEqual({ exit: 0 });
    expect(readdirSync(temporary)).toEqual([]);
  },
);

// Type-checking: each block is its own program, since blocks may declare conflicting globals
// (@fastify/session and @sessile/fastify both declare request.session). The programs share
// parsed library files.

const compilerOptions: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  strict: true,
  skipLibCheck: true,
  noEmit: true,
  allowJs: true,
  checkJs: true,
  types: ['node'],
  typeRoots: [join(modules, '@types')],
};
const host = ts.createCompilerHost(compilerOptions);
const parsed = new Map<string, ts.SourceFile | undefined>();
const getSourceFile = host.getSourceFile;
host.getSourceFile = (fileName, languageVersion, onError) => {
  if (fileName.startsWith(work) && !fileName.includes('/node_modules/')) {
    return getSourceFile.call(host, fileName, languageVersion, onError);
  }
  if (!parsed.has(fileName)) {
    parsed.set(fileName, getSourceFile.call(host, fileName, languageVersion, onError));
  }
  return parsed.get(fileName);
};

/** A fragment continues the nearest block before it on its page that is not marked. */
function preludeOf(block: CodeBlock, blocks: CodeBlock[]): CodeBlock | undefined {
  if (block.mark?.kind !== 'fragment') return undefined;
  return blocks.findLast((other) => other.line < block.line && other.mark === undefined);
}

/**
 * The type errors of `block` (after `prelude`, in one module), as `page:line: message`. A block
 * that does not run may import the reader's own files (relative paths) without them being there.
 */
function typeErrors(block: CodeBlock, prelude?: CodeBlock): string[] {
  const before = prelude?.code ?? '';
  const typescript = block.lang === 'ts' || prelude?.lang === 'ts';
  const file = join(blockDir(block), typescript ? 'block.ts' : 'block.mjs');
  writeFileSync(file, before + block.code);
  const program = ts.createProgram({
    rootNames: [file, join(fixtures, 'run-block.d.ts')],
    options: compilerOptions,
    host,
  });
  const source = program.getSourceFile(file);
  const diagnostics = [
    ...program.getOptionsDiagnostics(),
    ...program.getGlobalDiagnostics(),
    ...program.getSyntacticDiagnostics(source),
    ...program.getSemanticDiagnostics(source),
  ];
  const runs = typeCheckOnly(block) === undefined;
  const preludeLines = before.split('\n').length - 1;
  return diagnostics
    .filter((diagnostic) => runs || !isMissingOwnFile(diagnostic))
    .map((diagnostic) => {
      const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n');
      if (diagnostic.file === undefined || diagnostic.start === undefined) return message;
      if (diagnostic.file.fileName !== file) return `${diagnostic.file.fileName}: ${message}`;
      const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start);
      const at =
        prelude !== undefined && line < preludeLines
          ? `${prelude.page}:${prelude.line + line}`
          : `${block.page}:${block.line + line - preludeLines}`;
      return `${at}: ${message}`;
    });
}

function isMissingOwnFile(diagnostic: ts.Diagnostic): boolean {
  const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n');
  return diagnostic.code === 2307 && /'\.\.?\//.test(message);
}

// Running.

function blockDir(block: CodeBlock): string {
  const dir = join(work, `${block.page.replace(/\W+/g, '-')}-${block.line}`);
  mkdirSync(join(dir, SERVER_DATA_DIR), { recursive: true });
  return dir;
}

/**
 * Runs `block` in its own directory: its top-level code must complete, and a server it starts
 * must answer the block's HTTP check. Then the process is stopped, stores open or not.
 */
async function run(block: CodeBlock): Promise<void> {
  const dir = blockDir(block);
  const js =
    block.lang === 'ts'
      ? ts.transpileModule(block.code, {
          compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
        }).outputText
      : block.code;
  const file = join(dir, 'block.mjs');
  writeFileSync(file, js.replaceAll(SERVER_DATA_DIR, join(dir, SERVER_DATA_DIR)));
  const child = spawn(process.execPath, [join(fixtures, 'run-block.mjs'), file], {
    cwd: dir,
    env,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  try {
    const { outcome, output } = await settle(child);
    if (!('port' in outcome)) {
      expect(outcome, output()).toEqual({ evaluated: true });
      return;
    }
    const check = HTTP_CHECKS.find(
      (entry) => entry.page === block.page && block.code.includes(entry.contains),
    );
    await exercise(outcome.port, check?.steps ?? DEFAULT_STEPS, output);
  } finally {
    child.kill();
  }
}

type Outcome =
  | { exit: number | null; signal?: string }
  | { evaluated: true }
  | { port: number }
  | { timedOut: true };

/**
 * Waits until `child` exits, completes its top-level code without starting a server, reports the
 * port its server listens on, or takes too long.
 */
async function settle(child: ChildProcess): Promise<{ outcome: Outcome; output: () => string }> {
  let output = '';
  child.stdout?.on('data', (chunk) => {
    output += chunk;
  });
  child.stderr?.on('data', (chunk) => {
    output += chunk;
  });
  const outcome = await new Promise<Outcome>((resolve) => {
    let listening = false;
    const timer = setTimeout(() => resolve({ timedOut: true }), RUN_TIMEOUT_MS);
    const done = (outcome: Outcome) => {
      clearTimeout(timer);
      resolve(outcome);
    };
    child.on('message', (message: { listening?: true; port?: number; evaluated?: true }) => {
      if (message.listening) listening = true;
      if (message.port !== undefined) done({ port: message.port });
      if (message.evaluated && !listening) done({ evaluated: true });
    });
    child.once('exit', (code, signal) =>
      done(signal === null ? { exit: code } : { exit: code, signal }),
    );
  });
  return { outcome, output: () => output };
}

/** Sends `steps` in order, keeping cookies like a browser. */
async function exercise(port: number, steps: readonly Step[], output: () => string) {
  const jar = new Map<string, string>();
  for (const step of steps) {
    const headers: Record<string, string> = {};
    if (jar.size > 0)
      headers.cookie = [...jar].map(([name, value]) => `${name}=${value}`).join('; ');
    if (step.json !== undefined) headers['content-type'] = 'application/json';
    const response = await fetch(`http://127.0.0.1:${port}${step.path}`, {
      method: step.method,
      headers,
      body: step.json === undefined ? undefined : JSON.stringify(step.json),
      redirect: 'manual',
    });
    for (const cookie of response.headers.getSetCookie()) {
      const [pair = '', ...attributes] = cookie.split(';');
      const [name = '', value = ''] = pair.trim().split(/=(.*)/);
      const cleared =
        value === '' ||
        attributes.some((attribute) => /^\s*max-age=0\s*$/i.test(attribute)) ||
        attributes.some((attribute) => {
          const expires = /^\s*expires=(.*)$/i.exec(attribute);
          return expires !== null && Date.parse(expires[1] ?? '') <= Date.now();
        });
      if (cleared) jar.delete(name);
      else jar.set(name, value);
    }
    const text = await response.text();
    const what = `${step.method} ${step.path} answered ${response.status} ${text}\n${output()}`;
    if (step.status === undefined) expect(response.status, what).toBeLessThan(500);
    else expect(response.status, what).toBe(step.status);
    if (typeof step.body === 'string') expect(text, what).toBe(step.body);
    else if (step.body !== undefined) expect(JSON.parse(text), what).toEqual(step.body);
  }
}
