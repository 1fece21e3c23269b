import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';

interface AssertionResult {
  fullName: string;
  status: string;
  failureMessages?: string[];
}
interface FileResult {
  name: string;
  assertionResults: AssertionResult[];
}

// Each broken store must fail at least these tests. A suite that let them pass would be a defect.
const EXPECTED_FAILURES: Record<string, string[]> = {
  ReturnsExpiredStore: ['a record past expiresAt is absent for every read before any sweep'],
  SweepIgnoresLimitStore: [
    'honours limit, reports done honestly, and repeated calls finish the job',
    'budgetMs 0 does one bounded batch and leaves the rest for later calls',
  ],
  ResurrectingStore: ["only: 'present' after delete does not resurrect the session"],
  NonExclusiveLocksStore: [
    '200 concurrent locked increments of one session end at exactly 200',
    'an acquire that waits past waitMs rejects with ERR_LOCK_TIMEOUT',
  ],
  IgnoresFenceStore: [
    'a holder whose lease was taken over cannot set, touch or delete',
    'a released lock no longer lets its holder write',
  ],
  UnfairLocksStore: ['waiters in one process get the lock in arrival order'],
  LooseIdStore: ['a bad id (../x) rejects with ERR_INVALID_SESSION_ID and touches nothing'],
  RacyCreateStore: ["50 concurrent only: 'absent' sets on one id: exactly one wins"],
  CountsExpiredStore: ['a record past expiresAt is absent for every read before any sweep'],
  StaleOwnerIndexStore: [
    'a deleted session is no longer listed',
    'a swept session is no longer listed',
    'rewriting a session with another owner or none moves it in the index',
    '100 racing writes of one id with two owners leave it listed under the last one only',
  ],
  StaleSweepCursorStore: [
    'a later sweep removes what expired since an earlier one finished, also after a pass resumed at a later now',
  ],
  SweepBoundaryStore: ['a record whose expiresAt equals now is expired and swept'],
  LeakyOwnerIndexStore: [
    'a deleted session is no longer listed',
    'an id swept and written again for another owner is listed under that owner only',
    'clear() empties the index',
  ],
  OwnedByNoCopyStore: ['ownedBy hands out copies: changing a listed record changes nothing stored'],
  ThrowingStore: ['a bad id (../x) rejects with ERR_INVALID_SESSION_ID and touches nothing'],
  TrimmingIdStore: [
    'a bad id (trailing newline) rejects with ERR_INVALID_SESSION_ID and touches nothing',
    'a bad id (leading space) rejects with ERR_INVALID_SESSION_ID and touches nothing',
  ],
  UncheckedLendStore: [
    'a closed store rejects every method with ERR_STORE_CLOSED',
    'a bad id (../x) rejects with ERR_INVALID_SESSION_ID and touches nothing',
  ],
  ForgetsPassedOverSweepStore: [
    'a later sweep removes what expired since an earlier one finished, also after a pass resumed at a later now',
  ],
  ExpiredOwnerLeakStore: [
    'an expired session written again for another owner or none is not listed under the old one, before any sweep',
  ],
  CachedOwnerExpiryStore: [
    'a session written again by its owner with an earlier expiry is not listed once that expiry passed',
  ],
  CorruptMessageLeaksIdStore: ['an ERR_CORRUPT_RECORD message never contains the session id'],
  UncountedSweepStore: ['removes exactly the expired records and never a live one'],
  SweepFailsOnCloseStore: [
    'close() during a sweep with no limit or budget: the sweep stops at its next batch and resolves, honest about what it removed, and a reopened store sweeps the rest',
  ],
  SweepOutlivesCloseStore: [
    'close() during a sweep with no limit or budget: the sweep stops at its next batch and resolves, honest about what it removed, and a reopened store sweeps the rest',
  ],
  PendingWaitsSurviveCloseStore: [
    'close() rejects a lock wait already pending with ERR_STORE_CLOSED, not at its waitMs',
  ],
  DefersCreatesStore: [
    'a set, then a delete: the delete removes what the set wrote',
    'a set, then a get: the get returns what the set wrote',
    "a set, then an only: 'present' set: the update finds the record",
    'a set, then a touch: the touch extends the record',
    "a set, a delete, then an only: 'absent' set: the last create writes",
  ],
  CaseInsensitiveIdStore: ['ids that differ only in case are different sessions'],
  LooseWriteOptionsStore: ['misuse rejects with a TypeError and writes nothing'],
  UnboundedExpiryStore: ['misuse rejects with a TypeError and writes nothing'],
  TouchRewritesStore: ['touches racing a delete never bring it back, nor undo an update they race'],
  StaleReleaseStore: ['a takeover after the lease ends is reported to the old holder'],
  ClampingLocksStore: ['lock calls with bad arguments reject instead of throwing'],
  ClearsEveryStore: [
    'count, ids, get and clear() see the records of their own store only, not those of another open() beside it',
  ],
  ListsEveryStore: [
    'count, ids, get and clear() see the records of their own store only, not those of another open() beside it',
  ],
  LateOwnerIndexStore: [
    '100 racing writes of one id with two owners leave it listed under the last one only',
  ],
  UnsavedTouchStore: [
    'records, touches and deletes survive close() and reopen(), each as the last write before it',
    'a set, a touch and a delete each survive a SIGKILL that follows it as the last write of its process',
  ],
  // Saves its touches at close(), so only the crash test with a touch as the last write catches it.
  LazyTouchStore: [
    'a set, a touch and a delete each survive a SIGKILL that follows it as the last write of its process',
  ],
  RacyFileStore: [
    "only: 'absent' and only: 'present' are atomic across processes: one creator per id, and no update brings back a session deleted in another process",
  ],
};

// What a failure tells the store's author: the broken promise in words, not only `true` and
// `false`. Each broken store's failure of that test must say this.
const EXPECTED_MESSAGES: Record<string, [test: string, message: string]> = {
  ResurrectingStore: [
    "only: 'present' after delete does not resurrect the session",
    "set with only: 'present' after a delete answers false",
  ],
  RacyCreateStore: [
    "50 concurrent only: 'absent' sets on one id: exactly one wins",
    'the check and the write must be one atomic step',
  ],
};

// The probe group's fixtures: a probe that breaks a promise fails the place where it does, and
// the same store with a probe that keeps them passes every place.
const PROBE_EXPECTED_FAILURES: Record<string, string[]> = {
  ProbeCreatesStore: [
    'missing directories: probe answers absent, changes nothing, and open agrees',
    'a regular file: probe answers refused, changes nothing, and open agrees',
    'a path inside a regular file: probe answers refused, changes nothing, and open agrees',
  ],
  ProbeIgnoresOtherFilesStore: [
    'a directory of other files: probe answers refused, changes nothing, and open agrees',
  ],
  CorrectProbeStore: [],
};
/** Places every directory store's probe group has in these fixtures. */
const PROBE_PLACES = 6;

const vitestCli = join(
  createRequire(import.meta.url).resolve('vitest/package.json'),
  '..',
  'vitest.mjs',
);

let files: FileResult[] = [];

// Every broken store runs the whole suite: about 550 s in a clean-clone CI on 2 cores with the
// other packages' tests beside it.
beforeAll(async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sessile-broken-'));
  const output = join(dir, 'results.json');
  const config = fileURLToPath(new URL('./broken/vitest.config.ts', import.meta.url));
  try {
    // The run is expected to fail, so its exit code is ignored; the JSON report is what counts.
    await promisify(execFile)(
      process.execPath,
      [vitestCli, 'run', '--config', config, '--reporter=json', `--outputFile=${output}`],
      { maxBuffer: 64 * 1024 * 1024 },
    ).catch(() => undefined);
    files = (JSON.parse(await readFile(output, 'utf8')) as { testResults: FileResult[] })
      .testResults;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}, 1_200_000);

describe('the suite catches deliberately broken stores', () => {
  for (const [store, tests] of Object.entries(EXPECTED_FAILURES)) {
    it(`${store} fails the tests for the promise it breaks`, () => {
      const file = files.find((result) => result.name.endsWith(`${store}.fixture.ts`));
      expect(file, `results for ${store}`).toBeDefined();
      const results = file?.assertionResults ?? [];
      expect(results.length).toBeGreaterThan(50);
      for (const title of tests) {
        const matching = results.filter((result) => result.fullName.endsWith(title));
        expect(matching.length, `test "${title}" ran for ${store}`).toBeGreaterThan(0);
        expect(matching.map((result) => result.status)).toContain('failed');
      }
    });
  }
});

describe("the suite's failures say which promise the store broke", () => {
  for (const [store, [title, message]] of Object.entries(EXPECTED_MESSAGES)) {
    it(`${store}: "${title}" says "${message}"`, () => {
      const file = files.find((result) => result.name.endsWith(`${store}.fixture.ts`));
      const failed = (file?.assertionResults ?? []).filter(
        (result) => result.fullName.endsWith(title) && result.status === 'failed',
      );
      expect(failed.length, `"${title}" failed for ${store}`).toBeGreaterThan(0);
      expect(failed.flatMap((result) => result.failureMessages ?? []).join('\n')).toContain(
        message,
      );
    });
  }
});

describe('the probe group catches probes that break a promise', () => {
  for (const [store, tests] of Object.entries(PROBE_EXPECTED_FAILURES)) {
    it(`${store} fails exactly the places where its probe is wrong`, () => {
      const file = files.find((result) => result.name.endsWith(`${store}.fixture.ts`));
      expect(file, `results for ${store}`).toBeDefined();
      const results = file?.assertionResults ?? [];
      expect(results).toHaveLength(PROBE_PLACES);
      const failed = results.filter((result) => result.status === 'failed');
      expect(failed.map((result) => result.fullName).sort()).toEqual(
        tests.map((title) => `${store}: probe agrees with open ${title}`).sort(),
      );
    });
  }
});
