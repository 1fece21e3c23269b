import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jsonCodec, type SessionStore } from '@sessile/core';
import { afterAll, expect } from 'vitest';

export const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli.js');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** The script to run instead of this package's built CLI. */
  script?: string;
}

/** Runs the built `sessile` as its own process, as a user would. */
export function runCli(args: readonly string[], options: RunOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [options.script ?? CLI, ...args], {
      cwd: options.cwd ?? process.cwd(),
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** Parses the JSON document a `--json` run printed. */
export function jsonOf<T = Record<string, unknown>>(result: CliResult): T {
  try {
    return JSON.parse(result.stdout) as T;
  } catch {
    throw new Error(`not JSON (exit ${result.code}): ${result.stdout}\n${result.stderr}`);
  }
}

/** A temporary directory removed after the file's tests. Call at the top level of a test file. */
export function tempRoot(prefix: string): () => string {
  const root = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  let made = 0;
  return () => join(root, `${++made}`);
}

/** Stores `count` sessions through the default codec; returns their ids in order. */
export async function seed(
  store: SessionStore,
  ids: readonly string[],
  expiresAt: (index: number) => number,
): Promise<void> {
  const codec = jsonCodec();
  const now = Date.now();
  await Promise.all(
    ids.map((id, index) =>
      store.set(id, {
        data: codec.encode(
          { createdAt: now, lastAccessedAt: now, data: { user: `user-${index}`, index } },
          id,
        ),
        expiresAt: expiresAt(index),
      }),
    ),
  );
}

/** `expiresAt` is what a run between `startedAt` and `finishedAt` gave from its default TTL of `ttlMs`. */
export function expectDefaultTtl(
  expiresAt: number | undefined,
  ttlMs: number,
  startedAt: number,
  finishedAt = Date.now(),
): void {
  expect(expiresAt).toBeGreaterThanOrEqual(startedAt + ttlMs);
  expect(expiresAt).toBeLessThanOrEqual(finishedAt + ttlMs);
}
