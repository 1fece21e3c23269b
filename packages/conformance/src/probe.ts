import { lstatSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import {
  generateSessionId,
  isSessionError,
  type SessionStore,
  type StoreProbe,
} from '@sessile/core';
import { assertKnownOptions, describeValue } from '@sessile/core/store';
import { describe, expect, it } from 'vitest';

/** One place a store's options can point at, made before the store class's `probe` is asked. */
export interface ProbePlace<Options> {
  /** What is there, for the test's name: `'a missing directory'`, `'an SQLite file of an app'`. */
  name: string;
  /** Makes the place and returns the options that name it. */
  make(): Promise<Options>;
  /** What `probe` must answer there; `open` must then open it, make a store there, or reject. */
  state: StoreProbe['state'];
}

export interface ProbeConformanceOptions<Options> {
  /** Names the test group. */
  name: string;
  /** The store class's static `probe`. */
  probe(options: Options): Promise<StoreProbe>;
  /** The store class's static `open`. */
  open(options: Options): Promise<SessionStore>;
  /**
   * Everything `probe` could have changed at the place, compared before and after it is asked:
   * for a path, `snapshotTree` of the directory that holds it; for a server, its tables.
   */
  snapshot(options: Options): Promise<unknown>;
  /**
   * At least one place of each state. A `'present'` place holds a store with exactly one live
   * session in it (`storeWithOneSession` makes one).
   */
  places: readonly ProbePlace<Options>[];
}

const OPTION_NAMES = ['name', 'probe', 'open', 'snapshot', 'places'] as const;
const WHERE = 'runProbeConformance()';
const STATES: readonly unknown[] = ['present', 'absent', 'refused'];

/** Refuses options that would fail every test for the wrong reason, naming what is wrong. */
function checkProbeOptions(options: unknown): asserts options is ProbeConformanceOptions<unknown> {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(
      `${WHERE} needs options { name, probe, open, snapshot, places }, got ${describeValue(options)}`,
    );
  }
  assertKnownOptions(options, OPTION_NAMES, WHERE);
  const given = options as Partial<Record<(typeof OPTION_NAMES)[number], unknown>>;
  if (typeof given.name !== 'string' || given.name === '') {
    throw new TypeError(
      `${WHERE}: name must be a non-empty string, got ${describeValue(given.name)}`,
    );
  }
  for (const hook of ['probe', 'open', 'snapshot'] as const) {
    if (typeof given[hook] !== 'function') {
      throw new TypeError(
        `${WHERE}: ${hook} must be a function, got ${describeValue(given[hook])}`,
      );
    }
  }
  if (!Array.isArray(given.places)) {
    throw new TypeError(`${WHERE}: places must be an array, got ${describeValue(given.places)}`);
  }
  for (const [index, place] of (given.places as unknown[]).entries()) {
    const { name, make, state } = (place ?? {}) as Partial<ProbePlace<unknown>>;
    if (typeof name !== 'string' || typeof make !== 'function' || !STATES.includes(state)) {
      throw new TypeError(
        `${WHERE}: places[${index}] must be { name, make(), state: 'present' | 'absent' | 'refused' }, got name ${describeValue(name)}, make ${describeValue(make)}, state ${describeValue(state)}`,
      );
    }
  }
}

/**
 * Registers tests that a store class's static `probe` agrees with its `open` and creates and
 * changes nothing: at each place, `probe` answers the expected state (with a reason naming what
 * is there, unless `'present'`) and leaves the snapshot as it was; then `open` finds the one
 * session of a `'present'` place, makes an empty store at an `'absent'` one (which `probe` then
 * calls `'present'`), and rejects with a `SessionError` at a `'refused'` one.
 */
export function runProbeConformance<Options>(options: ProbeConformanceOptions<Options>): void {
  checkProbeOptions(options);
  const states = new Set(options.places.map((place) => place.state));
  if (states.size < 3) {
    throw new TypeError(
      'runProbeConformance(): places must include a present, an absent and a refused place',
    );
  }
  describe(`${options.name}: probe agrees with open`, () => {
    it.each(options.places.map((place) => [place.name, place.state, place] as const))(
      '%s: probe answers %s, changes nothing, and open agrees',
      async (_name, state, place) => {
        const at = await place.make();
        const before = await options.snapshot(at);
        // probe rejects only when it cannot look at all: what is at a place is an answer.
        const found = await options.probe(at).catch((error: unknown) => {
          throw new Error(
            `probe rejected (${String(error)}) where it must answer { state: '${state}' }`,
            { cause: error },
          );
        });
        expect(found.state, "probe's answer").toBe(state);
        if (found.state !== 'present') {
          expect(found.reason, `a probe answering '${found.state}' says why`).toMatch(/\S/);
        }
        expect(await options.snapshot(at), 'probe creates and changes nothing').toEqual(before);
        if (state === 'refused') {
          const refusal = await options.open(at).then(
            async (store) => {
              await store.close();
              return 'opened';
            },
            (error: unknown) => error,
          );
          expect(
            isSessionError(refusal),
            `open() where probe answers 'refused' rejects with a SessionError, got ${String(refusal)}`,
          ).toBe(true);
          return;
        }
        const store = await options.open(at);
        try {
          expect(
            await store.count(),
            state === 'present'
              ? 'open() finds the one session of the store there'
              : 'open() makes an empty store',
          ).toBe(state === 'present' ? 1 : 0);
        } finally {
          await store.close();
        }
        expect(
          await options.probe(at),
          "once open() has made a store here, even an empty one, probe answers 'present'",
        ).toEqual({ state: 'present' });
      },
    );
  });
}

/** Opens a store with `open`, gives it one session, and closes it: a `'present'` place. */
export async function storeWithOneSession<Options>(
  open: (options: Options) => Promise<SessionStore>,
  options: Options,
): Promise<Options> {
  const store = await open(options);
  try {
    const data = new TextEncoder().encode('{"probe":true}');
    await store.set(generateSessionId(), { data, expiresAt: Date.now() + 3_600_000 });
  } finally {
    await store.close();
  }
  return options;
}

/** Every path below `directory` with its type, size and modification time, sorted. */
export function snapshotTree(directory: string): string[] {
  const entries: string[] = [];
  const walk = (at: string) => {
    for (const name of readdirSync(at).sort()) {
      const path = join(at, name);
      const stats = lstatSync(path);
      const kind = stats.isDirectory() ? 'dir' : stats.isFile() ? 'file' : 'other';
      entries.push(`${path} ${kind} ${stats.size} ${stats.mtimeMs}`);
      if (stats.isDirectory()) walk(path);
    }
  };
  walk(directory);
  return entries;
}

/**
 * Directories for the places of a path store, each new one under `root` holding a regular file
 * `a-file` (to be a place itself, or to be in the way); `snapshot(path)` is `snapshotTree` of the
 * place's directory that `path` is in.
 */
export function placeDirectories(root: string): {
  make(): string;
  snapshot(path: string): string[];
} {
  let made = 0;
  return {
    make() {
      const dir = join(root, `probe-place-${++made}`);
      mkdirSync(dir);
      writeFileSync(join(dir, 'a-file'), 'not a directory');
      return dir;
    },
    snapshot(path) {
      return snapshotTree(join(root, relative(root, path).split(sep)[0] as string));
    },
  };
}

/**
 * The places every store kept at a path has, for `runProbeConformance`, in directories that
 * `placeDirectories` makes. `'directory'`: a store that is a directory its `open` makes with its
 * parents (a store, missing directories, an empty directory, a regular file, a path inside one).
 * `'file'`: a store kept in one file that its `open` creates, with any missing directories
 * above it (a store, a missing file, an empty file, a file of other bytes, a directory, a file
 * in missing directories, a file under a regular file). A store adds the places of its own rules,
 * and one whose `open` makes no directories maps 'a file in missing directories' to `'refused'`.
 */
export function pathStorePlaces(
  kind: 'directory' | 'file',
  places: ReturnType<typeof placeDirectories>,
  open: (options: { path: string }) => Promise<SessionStore>,
): ProbePlace<{ path: string }>[] {
  const at = (...names: string[]) => ({ path: join(places.make(), ...names) });
  const store: ProbePlace<{ path: string }> = {
    name: 'a store',
    state: 'present',
    make: () => storeWithOneSession(open, at(kind === 'file' ? 'sessions' : 'store')),
  };
  if (kind === 'directory') {
    return [
      store,
      { name: 'missing directories', state: 'absent', make: async () => at('new', 'store') },
      {
        name: 'an empty directory',
        state: 'absent',
        make: async () => {
          const options = at('empty');
          mkdirSync(options.path);
          return options;
        },
      },
      { name: 'a regular file', state: 'refused', make: async () => at('a-file') },
      {
        name: 'a path inside a regular file',
        state: 'refused',
        make: async () => at('a-file', 'store'),
      },
    ];
  }
  return [
    store,
    { name: 'a missing file', state: 'absent', make: async () => at('sessions') },
    {
      name: 'an empty file',
      state: 'absent',
      make: async () => {
        const options = at('sessions');
        writeFileSync(options.path, '');
        return options;
      },
    },
    { name: 'a file of other bytes', state: 'refused', make: async () => at('a-file') },
    { name: 'a directory', state: 'refused', make: async () => at() },
    {
      name: 'a file in missing directories',
      state: 'absent',
      make: async () => at('missing', 'new', 'sessions'),
    },
    {
      name: 'a file under a regular file',
      state: 'refused',
      make: async () => at('a-file', 'sessions'),
    },
  ];
}
