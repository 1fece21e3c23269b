import { spawn } from 'node:child_process';
import { generateSessionId } from '@sessile/core';
import { sleep } from '@sessile/core/store';
import { SqliteStore } from '@sessile/sqlite';
import Database from 'better-sqlite3';
import { expect, it } from 'vitest';
import { CLI, jsonOf, runCli, seed, tempRoot } from './helpers.js';

const nextDir = tempRoot('sessile-cli-resume-');
const TOTAL = 20_000;

function targetCount(path: string): number {
  try {
    const db = new Database(path, { readonly: true, fileMustExist: true });
    try {
      return (db.prepare('SELECT COUNT(*) AS n FROM sessions').get() as { n: number }).n;
    } finally {
      db.close();
    }
  } catch {
    return 0;
  }
}

it('a copy killed part way resumes where it stopped and ends with every session once', async () => {
  const sourcePath = `${nextDir()}.db`;
  const targetPath = `${nextDir()}.db`;
  const source = await SqliteStore.open({ path: sourcePath });
  const ids = Array.from({ length: TOTAL }, () => generateSessionId());
  const expiresAt = Date.now() + 3_600_000;
  await seed(source, ids, () => expiresAt);
  await source.close();
  const args = ['copy', '--from', `sqlite:${sourcePath}`, '--to', `sqlite:${targetPath}`, '--json'];

  const child = spawn(process.execPath, [CLI, ...args], { stdio: 'ignore' });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  while (targetCount(targetPath) === 0 && child.exitCode === null) await sleep(10);
  child.kill('SIGKILL');
  await exited;
  const partial = targetCount(targetPath);
  expect(partial).toBeGreaterThan(0);
  expect(partial).toBeLessThan(TOTAL);

  const resumed = await runCli(args);
  expect(resumed.code).toBe(0);
  expect(jsonOf(resumed)).toMatchObject({
    counts: { read: TOTAL, written: TOTAL - partial, present: partial },
  });
  const again = jsonOf(await runCli(args));
  expect(again).toMatchObject({ counts: { written: 0, present: TOTAL } });

  const reopenedSource = await SqliteStore.open({ path: sourcePath });
  const target = await SqliteStore.open({ path: targetPath });
  try {
    expect(await target.count()).toBe(TOTAL);
    for (const id of ids.slice(0, 200)) {
      expect(await target.get(id)).toEqual(await reopenedSource.get(id));
    }
  } finally {
    await Promise.all([reopenedSource.close(), target.close()]);
  }
});

it('SIGINT stops a copy at a record boundary with exit 130, and a rerun finishes it', async () => {
  const sourcePath = `${nextDir()}.db`;
  const targetPath = `${nextDir()}.db`;
  const source = await SqliteStore.open({ path: sourcePath });
  const ids = Array.from({ length: TOTAL }, () => generateSessionId());
  await seed(source, ids, () => Date.now() + 3_600_000);
  await source.close();
  const args = ['copy', '--from', `sqlite:${sourcePath}`, '--to', `sqlite:${targetPath}`, '--json'];

  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  while (targetCount(targetPath) === 0 && child.exitCode === null) await sleep(10);
  child.kill('SIGINT');
  const code = await exited;
  const report = JSON.parse(stdout) as { interrupted: boolean; counts: { written: number } };
  if (code === 0) {
    // The whole copy landed before the signal did (a loaded machine can delay it): then it is
    // complete, and the killed copy above has shown the resume.
    expect(report).toMatchObject({ interrupted: false, counts: { written: TOTAL } });
    expect(targetCount(targetPath)).toBe(TOTAL);
    return;
  }
  expect(code).toBe(130);
  expect(report.interrupted).toBe(true);
  expect(targetCount(targetPath)).toBe(report.counts.written);
  const resumed = jsonOf(await runCli(args));
  expect(resumed).toMatchObject({ counts: { written: TOTAL - report.counts.written } });
  expect(targetCount(targetPath)).toBe(TOTAL);
});
