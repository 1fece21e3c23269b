// Every SessionError code a package's src throws is documented in that package's README, and
// core's Errors table lists exactly the codes of `SessionErrorCode`, each thrown somewhere.
// A static scan of `new SessionError('ERR_…'` in packages/*/src: codes are always literals there.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));
const packagesDir = join(root, 'packages');

const CONSTRUCTION = /new SessionError\(\s*([^,)]*)/g;
const LITERAL_CODE = /^'(ERR_[A-Z0-9_]+)'$/;

function sourceFiles(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return /\.[cm]?ts$/.test(entry.name) && !entry.name.endsWith('.d.ts') ? [path] : [];
  });
}

interface Scan {
  /** Each code with the first `file:line` that throws it. */
  readonly codes: Map<string, string>;
  /** Constructions whose code is not a string literal, which the scan cannot read. */
  readonly unreadable: string[];
}

function scan(pkg: string): Scan {
  const codes = new Map<string, string>();
  const unreadable: string[] = [];
  for (const file of sourceFiles(join(packagesDir, pkg, 'src'))) {
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(CONSTRUCTION)) {
      const where = `${file.slice(root.length)}:${text.slice(0, match.index).split('\n').length}`;
      const code = LITERAL_CODE.exec((match[1] ?? '').trim())?.[1];
      if (code === undefined) unreadable.push(`${where}: ${match[1]}`);
      else if (!codes.has(code)) codes.set(code, where);
    }
  }
  return { codes, unreadable };
}

const packages = readdirSync(packagesDir, { withFileTypes: true })
  .filter((entry) => entry.isDirectory())
  .map((entry) => entry.name)
  .filter((name) => readdirSync(join(packagesDir, name)).includes('src'))
  .sort();

function readme(pkg: string): string {
  return readFileSync(join(packagesDir, pkg, 'README.md'), 'utf8');
}

/** The union members of core's `SessionErrorCode` type. */
function sessionErrorCodes(): string[] {
  const text = readFileSync(join(packagesDir, 'core/src/errors.ts'), 'utf8');
  const union = /export type SessionErrorCode =([^;]*);/.exec(text)?.[1] ?? '';
  return [...union.matchAll(/'(ERR_[A-Z0-9_]+)'/g)].map((match) => match[1] as string);
}

/** The codes of the table rows under core README's `## Errors` heading. */
function coreErrorsTable(): string[] {
  const text = readme('core');
  const start = text.indexOf('\n## Errors\n');
  expect(start, "core's README has an ## Errors section").toBeGreaterThan(-1);
  const end = text.indexOf('\n## ', start + 1);
  const section = text.slice(start, end === -1 ? undefined : end);
  // Only the first table: the codes a SessionError can carry, one row each.
  const table = section.slice(
    section.indexOf('\n|'),
    section.indexOf('\n\n', section.indexOf('\n|')),
  );
  return [...table.matchAll(/^\|\s*`(ERR_[A-Z0-9_]+)`\s*\|/gm)].map((match) => match[1] as string);
}

describe('SessionError codes', () => {
  test('the scan reads every construction (a code passed as a variable would escape it)', () => {
    expect(packages.flatMap((pkg) => scan(pkg).unreadable)).toEqual([]);
  });

  for (const pkg of packages) {
    test(`each code packages/${pkg}/src throws is in packages/${pkg}/README.md`, () => {
      const text = readme(pkg);
      const missing = [...scan(pkg).codes]
        .filter(([code]) => !text.includes(`\`${code}\``))
        .map(([code, where]) => `${code} (thrown at ${where})`);
      expect(missing).toEqual([]);
    });
  }

  test("core's Errors table lists each SessionErrorCode once, and nothing else", () => {
    const codes = sessionErrorCodes();
    expect(codes.length).toBeGreaterThan(0);
    expect(coreErrorsTable()).toEqual(codes);
  });

  test('each code in the Errors table is thrown by some package', () => {
    const thrown = new Set(packages.flatMap((pkg) => [...scan(pkg).codes.keys()]));
    expect(coreErrorsTable().filter((code) => !thrown.has(code))).toEqual([]);
  });

  test('no package throws a code that is not a SessionErrorCode', () => {
    const known = new Set(sessionErrorCodes());
    const unknown = packages.flatMap((pkg) =>
      [...scan(pkg).codes]
        .filter(([code]) => !known.has(code))
        .map(([code, at]) => `${code} at ${at}`),
    );
    expect(unknown).toEqual([]);
  });
});
