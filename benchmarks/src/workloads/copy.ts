/**
 * `sessile copy` as an operator runs it: the CLI in its own process copies every live session
 * of a FileStore into the target store. Its rate is set beside the target store's own write
 * rate for the same records, written in process at the same concurrency: what a copy costs over
 * writing the sessions fresh.
 */
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { SessionRecord, SessionStore } from '@sessile/core';
import { Unavailable } from '../adapter.js';
import { makeSessionBody } from '../body.js';
import { fill } from '../measure.js';
import { encodeBody } from '../targets/engines.js';
import { LIVE_FOR_MS, type TempDirs, type Workload, type WorkloadContext } from './context.js';

const require = createRequire(import.meta.url);

/** The CLI's default `--concurrency`, used for the direct writes too. */
const COPY_CONCURRENCY = 64;

export interface CopyResult {
  sessions: number;
  /** Sessions per second through `sessile copy --from file:… --to <target>`, process start included. */
  copyPerSec: number;
  /** Sessions per second written straight into the same store with `set`, in process. */
  directPerSec: number;
  /** `copyPerSec / directPerSec`. */
  ratioToDirect: number;
}

/** The stores a `sessile` address can name: the CLI's scheme, and where a fresh one lives in a dir. */
const DESTINATIONS: Record<
  string,
  { packageName: string; className: string; at(dir: string): string }
> = {
  sqlite: {
    packageName: '@sessile/sqlite',
    className: 'SqliteStore',
    at: (dir) => join(dir, 'sessions.db'),
  },
  level: {
    packageName: '@sessile/level',
    className: 'LevelStore',
    at: (dir) => join(dir, 'level'),
  },
  file: { packageName: '@sessile/file', className: 'FileStore', at: (dir) => join(dir, 'files') },
  dbm: {
    packageName: '@sessile/dbm',
    className: 'DbmStore',
    at: (dir) => join(dir, 'sessions.dbm'),
  },
};

function destination(name: string) {
  const found = DESTINATIONS[name];
  if (found === undefined) throw new Unavailable(`${name} has no sessile address`);
  return found;
}

type StoreModule = Record<string, { open(options: object): Promise<SessionStore> } | undefined>;

async function openStore(name: string, dir: string): Promise<SessionStore> {
  const { packageName, className, at } = destination(name);
  const StoreClass = ((await import(packageName)) as StoreModule)[className];
  if (StoreClass === undefined) throw new Unavailable(`${packageName} is not built`);
  return StoreClass.open({ path: at(dir) });
}

/** The FileStore every target copies from, filled once per run and size. */
let source: { dirs: TempDirs; sessions: number; dir: Promise<string> } | undefined;

function sourceStore(context: WorkloadContext, sessions: number): Promise<string> {
  if (source?.dirs !== context.dirs || source.sessions !== sessions) {
    source = { dirs: context.dirs, sessions, dir: fillSource(context, sessions) };
    // A failed fill is retried by the next target rather than remembered.
    source.dir.catch(() => {
      source = undefined;
    });
  }
  return source.dir;
}

async function fillSource(context: WorkloadContext, sessions: number): Promise<string> {
  const dir = await context.dirs.make('copy-source');
  const store = await openStore('file', dir);
  try {
    const expiresAt = Date.now() + LIVE_FOR_MS;
    const ids = context.shared.idPool.take(sessions);
    await fill(
      sessions,
      COPY_CONCURRENCY,
      (i) =>
        store
          .set(ids[i] as string, { data: encodeBody(makeSessionBody(i)), expiresAt })
          .then(() => undefined),
      context.signal,
    );
  } finally {
    await store.close();
  }
  return dir;
}

/** Every live record of the source, read once, untimed: the direct writes' input. */
async function readAll(dir: string): Promise<[string, SessionRecord][]> {
  const store = await openStore('file', dir);
  try {
    const records: [string, SessionRecord][] = [];
    for await (const id of store.ids()) {
      const record = await store.get(id);
      if (record !== undefined) records.push([id, record]);
    }
    return records;
  } finally {
    await store.close();
  }
}

function cliScript(): string {
  return require.resolve('@sessile/cli/package.json').replace(/package\.json$/, 'dist/cli.js');
}

/** Runs `sessile copy` and resolves with its wall time, once it wrote every record. */
async function runCopy(
  from: string,
  to: string,
  expected: number,
  signal: AbortSignal,
): Promise<number> {
  const started = performance.now();
  const output = await new Promise<string>((resolve, reject) => {
    execFile(
      process.execPath,
      [cliScript(), 'copy', '--from', `file:${destination('file').at(from)}`, '--to', to, '--json'],
      { signal, maxBuffer: 1 << 20 },
      (error, stdout, stderr) =>
        error
          ? reject(new Error(`sessile copy failed: ${stderr.trim() || error.message}`))
          : resolve(stdout),
    );
  });
  const elapsedMs = performance.now() - started;
  const written = (JSON.parse(output) as { counts?: { written?: number } }).counts?.written;
  if (written !== expected)
    throw new Error(`sessile copy wrote ${written} of ${expected} sessions`);
  return elapsedMs;
}

export const copyWorkload: Workload<CopyResult, 'copy'> = {
  name: 'copy',
  title: 'Copy between stores',
  description:
    '`sessile copy` from a FileStore into the target, against writing the same records into the target directly',
  primary: { field: 'ratioToDirect', label: 'copy rate / direct write rate', higherIsBetter: true },
  limitMs: (profile) => profile.limitsMs.copy,
  skipReason: (target) =>
    target.kind === 'sessile' && DESTINATIONS[target.name] !== undefined
      ? undefined
      : 'the copy is measured into sessile stores that a `sessile` address names',
  async run(context) {
    const sessions = context.profile.copySessions;
    const from = await sourceStore(context, sessions);
    const records = await readAll(from);
    const name = context.target.name;

    const directDir = await context.dirs.make(`${name}-direct`);
    let directMs: number;
    const store = await openStore(name, directDir);
    try {
      const started = performance.now();
      await fill(
        records.length,
        COPY_CONCURRENCY,
        async (i) => {
          const [id, record] = records[i] as [string, SessionRecord];
          await store.set(id, record, { only: 'absent' });
        },
        context.signal,
      );
      directMs = performance.now() - started;
    } finally {
      await store.close();
      await context.dirs.remove(directDir);
    }

    const copyDir = await context.dirs.make(`${name}-copy`);
    try {
      const copyMs = await runCopy(
        from,
        `${name}:${destination(name).at(copyDir)}`,
        records.length,
        context.signal,
      );
      const copied = await openStore(name, copyDir);
      const count = await copied.count().finally(() => copied.close());
      if (count !== records.length)
        throw new Error(`the copy holds ${count} of ${records.length} sessions`);
      const copyPerSec = Math.round((records.length / copyMs) * 1000);
      const directPerSec = Math.round((records.length / directMs) * 1000);
      return {
        sessions: records.length,
        copyPerSec,
        directPerSec,
        ratioToDirect: Math.round((copyPerSec / directPerSec) * 100) / 100,
      };
    } finally {
      await context.dirs.remove(copyDir);
    }
  },
};
