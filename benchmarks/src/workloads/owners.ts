/**
 * Sessions by user: listing one owner's sessions among many, and what keeping the owner index
 * costs on `set` and `get`. Two fresh stores of the target's kind, one written with owners and
 * one without, take turns round by round, so both see the same machine.
 */
import type { SessionRecord, SessionStore } from '@sessile/core';
import { Unavailable } from '../adapter.js';
import { makeSessionBody } from '../body.js';
import { fill, median, round, runLoad } from '../measure.js';
import { encodeBody } from '../targets/engines.js';
import { LIVE_FOR_MS, type Workload, type WorkloadContext } from './context.js';

/**
 * Rounds of writes (and of reads) each store takes in turn. The first is a warm-up and is not
 * counted; the medians of the others are reported. The overheads are medians of each round's
 * paired ratio (the two stores' rates in the same round), so a slow spell of the machine or a
 * LevelDB compaction that spans a round moves both sides of that round's ratio alike. Many short
 * rounds rather than a few long ones: a garbage collection or a compaction then spoils a few
 * pairs out of fifty, which the median passes over, where with ten pairs (MemoryStore's 9k
 * creates a round, 40 ms) single rounds ranged from -60% to +390% and the median from -5% to +42%
 * between runs of the same code; with 50 pairs it stayed within +11% to +21%.
 */
export const OWNER_ROUNDS = 51;
/** All the read rounds of one store together last this many times the profile's `opsDurationMs`. */
const READ_DURATIONS = 3;

export interface OwnersResult {
  sessions: number;
  owners: number;
  /** `ownedBy(owner)` calls per second, each listing one owner's sessions with their records. */
  listsPerSec: number;
  listP99Ms: number;
  /** Creates per second into the store written with owners, and into the one without. */
  setWithOwnerPerSec: number;
  setWithoutOwnerPerSec: number;
  /** The median over rounds of that round's rate without owners over its rate with them, less 1: what the index adds to a write. */
  setOverhead: number;
  getWithOwnerPerSec: number;
  getWithoutOwnerPerSec: number;
  getOverhead: number;
}

function ownerOf(i: number, owners: number): string {
  return `user-${i % owners}`;
}

/** Which store goes first alternates, so neither always meets a cold or a warm machine. */
function turnOrder(round: number): [0, 1] | [1, 0] {
  return round % 2 === 0 ? [0, 1] : [1, 0];
}

/** The median of each round's `without / with - 1`, from per-round rates `[with, without]`. */
function pairedOverhead([withOwners, without]: [number[], number[]]): number {
  return median(withOwners.map((rate, i) => (without[i] as number) / rate - 1));
}

/** A fresh store of the target's kind, in its own directory, and how to close and remove it. */
async function openFresh(
  context: WorkloadContext,
  label: string,
): Promise<{
  store: SessionStore & Required<Pick<SessionStore, 'ownedBy'>>;
  close(): Promise<void>;
}> {
  const dir = await context.dirs.make(`${context.target.name}-${label}`);
  const opened = await context.target.open(dir).catch(async (error: unknown) => {
    await context.dirs.remove(dir);
    throw error;
  });
  const close = async () => {
    await opened.close().catch(() => {});
    if (!context.signal.aborted) await context.dirs.remove(dir);
  };
  const store = opened.store;
  if (store?.ownedBy === undefined || !store.capabilities.ownerIndex) {
    await close();
    throw new Unavailable('this store keeps no owner index');
  }
  return { store: store as SessionStore & Required<Pick<SessionStore, 'ownedBy'>>, close };
}

export const ownersWorkload: Workload<OwnersResult, 'owners'> = {
  name: 'owners',
  title: 'Sessions by user',
  description:
    "`ownedBy(owner)` among many sessions of many owners, and the owner index's cost on set and get",
  primary: { field: 'listsPerSec', label: 'owner listings/s', higherIsBetter: true },
  limitMs: (profile) => profile.limitsMs.owners,
  skipReason: (target) =>
    target.kind === 'sessile' && target.viaExpressOf === undefined
      ? undefined
      : 'measured on the native sessile stores',
  unavailableHereOnly: true,
  async run(context) {
    const { sessions, owners } = context.profile.owners;
    const { concurrency } = context.profile;
    const opened = [await openFresh(context, 'owners')];
    try {
      opened.push(await openFresh(context, 'no-owners'));
      const stores = opened.map((open) => open.store);
      const withOwners = (opened[0] as (typeof opened)[number]).store;
      const ids = context.shared.idPool.take(sessions);
      const expiresAt = Date.now() + LIVE_FOR_MS;
      // Both stores' records are made before any is timed, so neither side pays for building them.
      const records = ids.map(
        (_, i): SessionRecord => ({ data: encodeBody(makeSessionBody(i)), expiresAt }),
      );
      // One object literal each, as SessionManager builds a record: a spread copy keeps the
      // source's two in-object fields and stores `owner` outside them, which slowed MemoryStore's
      // set with owners by a further 25 to 30 points in this loop.
      const owned = records.map(
        (record, i): SessionRecord => ({
          data: record.data,
          expiresAt: record.expiresAt,
          owner: ownerOf(i, owners),
        }),
      );
      const setRates: [number[], number[]] = [[], []];
      const perRound = Math.ceil(sessions / OWNER_ROUNDS);
      for (let round = 0; round < OWNER_ROUNDS; round++) {
        const from = round * perRound;
        const count = Math.min(perRound, sessions - from);
        if (count <= 0) break;
        for (const which of turnOrder(round)) {
          const store = stores[which] as SessionStore;
          const started = performance.now();
          await fill(
            count,
            concurrency,
            (i) => {
              const index = from + i;
              const record = (which === 0 ? owned : records)[index] as SessionRecord;
              return store.set(ids[index] as string, record, { only: 'absent' });
            },
            context.signal,
          );
          if (round > 0) {
            (setRates[which] as number[]).push((count / (performance.now() - started)) * 1000);
          }
        }
      }

      const getRates: [number[], number[]] = [[], []];
      const readMs = (context.profile.opsDurationMs * READ_DURATIONS) / OWNER_ROUNDS;
      for (let round = 0; round < OWNER_ROUNDS; round++) {
        for (const which of turnOrder(round)) {
          const store = stores[which] as SessionStore;
          const load = await runLoad(
            { concurrency, durationMs: readMs, signal: context.signal },
            (i) => store.get(ids[(i * 7919 + round) % sessions] as string),
          );
          if (load.errors > 0) throw new Error(`get failed: ${load.firstError}`);
          if (round > 0) (getRates[which] as number[]).push(load.opsPerSec);
        }
      }

      const listed = await runLoad(
        { concurrency, durationMs: context.profile.opsDurationMs, signal: context.signal },
        async (i) => {
          const owner = (i * 7919) % owners;
          const found = await withOwners.ownedBy(ownerOf(owner, owners));
          const expected = Math.floor(sessions / owners) + (owner < sessions % owners ? 1 : 0);
          if (found.length !== expected) {
            throw new Error(`ownedBy listed ${found.length} sessions of an owner with ${expected}`);
          }
        },
      );
      if (listed.errors > 0) throw new Error(listed.firstError);

      const setWithOwnerPerSec = Math.round(median(setRates[0]));
      const setWithoutOwnerPerSec = Math.round(median(setRates[1]));
      const getWithOwnerPerSec = Math.round(median(getRates[0]));
      const getWithoutOwnerPerSec = Math.round(median(getRates[1]));
      return {
        sessions,
        owners,
        listsPerSec: listed.opsPerSec,
        listP99Ms: listed.p99Ms,
        setWithOwnerPerSec,
        setWithoutOwnerPerSec,
        setOverhead: round(pairedOverhead(setRates)),
        getWithOwnerPerSec,
        getWithoutOwnerPerSec,
        getOverhead: round(pairedOverhead(getRates)),
      };
    } finally {
      await Promise.all(opened.map((open) => open.close()));
    }
  },
};
