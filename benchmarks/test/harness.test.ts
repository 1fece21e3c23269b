import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FRAMEWORK_MODES } from '../src/http/frameworks.js';
import { PROFILES } from '../src/profile.js';
import { pairedRatio } from '../src/report/format.js';
import { END_MARKER, START_MARKER, writeReport } from '../src/report/markdown.js';
import { replaceBetween, storeMarkers, writeStoreReadmes } from '../src/report/readmes.js';
import { sessileOver } from '../src/report/sections/http.js';
import type { BenchResults, OpsWorkloadName, Outcome } from '../src/results.js';
import { comparisonOrder, runBenchmarks, WORKLOADS } from '../src/run.js';
import { TARGETS } from '../src/targets/index.js';
import type { HttpModeResult, HttpResult } from '../src/workloads/http.js';

/**
 * Checks that `text` is a well-formed XML document: one root, balanced tags, quoted attributes,
 * no stray `<` or `&` in text. Enough for hand-written SVG, without an XML dependency.
 */
function assertWellFormedXml(text: string): void {
  const stack: string[] = [];
  let roots = 0;
  let position = 0;
  const tag = /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"<]*")*)\s*(\/?)>/y;
  while (position < text.length) {
    const next = text.indexOf('<', position);
    const chunk = text.slice(position, next === -1 ? text.length : next);
    expect(chunk).not.toMatch(/&(?!(amp|lt|gt|quot|apos|#\d+);)/);
    if (next === -1) break;
    tag.lastIndex = next;
    const match = tag.exec(text);
    if (match === null) throw new Error(`malformed tag at ${next}: ${text.slice(next, next + 80)}`);
    const [whole, closing, name, , selfClosing] = match;
    if (closing) {
      expect(stack.pop()).toBe(name);
    } else if (!selfClosing) {
      if (stack.length === 0) roots++;
      stack.push(name as string);
    } else if (stack.length === 0) {
      roots++;
    }
    position = next + whole.length;
  }
  expect(stack).toEqual([]);
  expect(roots).toBe(1);
}

/** Peers and engines that are plain npm packages with no server, so they must run everywhere. */
const ALWAYS_RUNNABLE = [
  'memory',
  'memory-express',
  'map',
  'raw-sqlite',
  'raw-level',
  'raw-fs',
  'memorystore',
  'better-sqlite3-session-store',
  'connect-sqlite3',
  'session-file-store',
  'level-session-store',
];

describe('the benchmark harness at tiny sizes', () => {
  let results: BenchResults;
  let outDir: string;

  beforeAll(async () => {
    outDir = await mkdtemp(join(tmpdir(), 'sessile-bench-test-'));
    results = await runBenchmarks({ profile: PROFILES.tiny });
  }, 600_000);

  afterAll(async () => {
    await rm(outDir, { recursive: true, force: true });
  });

  it('records the environment and survives a JSON round trip', () => {
    const parsed = JSON.parse(JSON.stringify(results)) as BenchResults;
    expect(parsed.schema).toBe(1);
    expect(parsed.environment.node).toBe(process.version);
    expect(parsed.environment.cores).toBeGreaterThan(0);
    expect(parsed.environment.cpuModel.length).toBeGreaterThan(0);
    expect(Date.parse(parsed.environment.date)).not.toBeNaN();
    expect(parsed.environment.packages['better-sqlite3']).toMatch(/^\d+\.\d+\.\d+/);
    expect(parsed.targets.map((target) => target.name)).toEqual(
      TARGETS.map((target) => target.name),
    );
    expect(Object.keys(parsed.results)).toEqual(WORKLOADS.map((workload) => workload.name));
  });

  it('runs every workload on every target that can run, and says why for those that cannot', () => {
    for (const name of ALWAYS_RUNNABLE) {
      expect(results.targets.find((target) => target.name === name)?.status, name).toBe('ok');
    }
    for (const target of results.targets) {
      for (const workload of WORKLOADS) {
        const outcome = results.results[workload.name]?.[target.name];
        expect(outcome, `${workload.name} on ${target.name}`).toBeDefined();
        if (target.status === 'unavailable') {
          expect(outcome?.status).toBe('unavailable');
          expect(target.reason).toBeTruthy();
        } else if (outcome?.status !== 'skipped') {
          expect(
            outcome?.status === 'ok' ? 'ok' : `${outcome?.status}: ${outcome?.reason}`,
            `${workload.name} on ${target.name}`,
          ).toBe(
            workload.unavailableHereOnly && outcome?.status === 'unavailable'
              ? 'unavailable'
              : 'ok',
          );
        }
      }
    }
  });

  it('reports numeric throughput and latency for every measured operation workload', () => {
    const opsWorkloads: OpsWorkloadName[] = [
      'create',
      'create-preloaded',
      'read',
      'read-missing',
      'mixed',
    ];
    for (const workload of opsWorkloads) {
      for (const [target, outcome] of Object.entries(results.results[workload] ?? {})) {
        if (outcome.status !== 'ok') continue;
        // Peers are reported as they are, errors included; sessile stores and raw engines must not fail.
        const mustNotFail = results.targets.find((t) => t.name === target)?.kind !== 'peer';
        const { ops, opsPerSec, p50Ms, p99Ms, maxMs, errors } = outcome.result;
        expect(ops, `${workload} on ${target}`).toBeGreaterThan(0);
        if (mustNotFail) expect(errors, `${workload} on ${target}`).toBe(0);
        for (const value of [opsPerSec, p50Ms, p99Ms, maxMs])
          expect(Number.isFinite(value)).toBe(true);
        expect(p50Ms).toBeLessThanOrEqual(p99Ms);
        expect(p99Ms).toBeLessThanOrEqual(maxMs);
      }
    }
  });

  it('loses no update under sessile locks, and leaves no expired session after a sessile cleanup', () => {
    const sessile = results.targets.filter(
      (target) => target.kind === 'sessile' && target.status === 'ok',
    );
    expect(sessile.length).toBeGreaterThan(0);
    for (const target of sessile) {
      const contention = results.results.contention?.[target.name];
      // A target may leave out workloads that would only repeat another target's figures.
      if (contention?.status !== 'skipped') expect(contention?.status, target.name).toBe('ok');
      if (contention?.status === 'ok') expect(contention.result.lostLocked, target.name).toBe(0);
      const cleanup = results.results.cleanup?.[target.name];
      if (cleanup?.status === 'ok') {
        expect(cleanup.result.expiredLeft, target.name).toBe(0);
        expect(cleanup.result.cleanups, target.name).toBeGreaterThan(0);
      }
    }
  });

  it('floods one session with locked cycles and parallel requests, and loses none of them', () => {
    const sessile = results.targets.filter(
      (target) => target.kind === 'sessile' && target.status === 'ok',
    );
    const { cycles } = PROFILES.tiny.lockFlood;
    let measured = 0;
    for (const target of sessile) {
      const direct = results.results['lock-flood']?.[target.name];
      if (direct?.status === 'ok') {
        measured++;
        const { saved, lost, timeouts, errors, uncontendedCycles } = direct.result;
        expect(lost, target.name).toBe(0);
        expect(errors, target.name).toBe(0);
        // Every cycle either saved its increment or timed out waiting for the lock.
        expect(saved + timeouts, target.name).toBe(cycles);
        expect(uncontendedCycles, target.name).toBeGreaterThan(0);
      }
      const http = results.results['lock-flood-http']?.[target.name];
      if (http?.status === 'ok') {
        const { requests, served, busy, failed, lost } = http.result;
        expect(lost, target.name).toBe(0);
        expect(failed, target.name).toBe(0);
        expect(served + busy, target.name).toBe(requests);
      }
    }
    expect(measured).toBeGreaterThan(0);
  });

  it('copies every live session into each sessile store with the CLI, and sets its rate beside direct writes', () => {
    const copied = Object.entries(results.results.copy ?? {}).filter(
      ([, outcome]) => outcome.status === 'ok',
    );
    expect(copied.map(([target]) => target).sort()).toEqual(['dbm', 'file', 'level', 'sqlite']);
    for (const [target, outcome] of copied) {
      if (outcome.status !== 'ok') continue;
      const { sessions, copyPerSec, directPerSec, ratioToDirect } = outcome.result;
      expect(sessions, target).toBe(PROFILES.tiny.copySessions);
      expect(copyPerSec, target).toBeGreaterThan(0);
      expect(directPerSec, target).toBeGreaterThan(0);
      expect(ratioToDirect, target).toBeCloseTo(copyPerSec / directPerSec, 1);
    }
  });

  it('serves Koa and Hono apps that keep their sessions, under sessile and under koa-session and hono-sessions', () => {
    const memory = results.results['http-frameworks']?.memory;
    expect(memory?.status).toBe('ok');
    if (memory?.status !== 'ok') return;
    // Each mode first checked that three requests with the app's cookies counted 1, 2, 3.
    expect(Object.keys(memory.result.modes).sort()).toEqual([...FRAMEWORK_MODES].sort());
    for (const [mode, outcome] of Object.entries(memory.result.modes)) {
      expect(outcome.status, `${mode}: ${outcome.reason ?? ''}`).toBe('ok');
      expect(outcome.requests, mode).toBeGreaterThan(0);
      expect(outcome.non2xx, mode).toBe(0);
    }
    expect(memory.result.koaRatio).toBeCloseTo(
      memory.result.koaSessileRps / memory.result.koaSessionRps,
      1,
    );
  });

  it("lists owners' sessions on every store with an owner index, and measures the index's cost", () => {
    const measured = Object.entries(results.results.owners ?? {}).filter(
      ([, outcome]) => outcome.status === 'ok',
    );
    // Every store in the core and file-backed packages keeps an owner index.
    for (const name of ['memory', 'sqlite', 'level', 'file', 'dbm']) {
      expect(measured.map(([target]) => target)).toContain(name);
    }
    for (const [target, outcome] of measured) {
      if (outcome.status !== 'ok') continue;
      const row = outcome.result;
      expect(row.sessions, target).toBe(PROFILES.tiny.owners.sessions);
      for (const value of [
        row.listsPerSec,
        row.setWithOwnerPerSec,
        row.setWithoutOwnerPerSec,
        row.getWithOwnerPerSec,
        row.getWithoutOwnerPerSec,
      ]) {
        expect(value, target).toBeGreaterThan(0);
      }
    }
  });

  it('writes well-formed SVG charts and replaces only the marked part of the report', async () => {
    const docPath = join(outDir, 'benchmarks.md');
    const chartsDir = join(outDir, 'benchmarks');
    await writeFile(
      docPath,
      `# Mine\n\nhand-written\n\n${START_MARKER}\nold figures\n${END_MARKER}\n\ntrailer\n`,
    );
    await writeReport(results, docPath, chartsDir);
    const markdown = await readFile(docPath, 'utf8');
    expect(markdown.startsWith('# Mine\n\nhand-written\n\n')).toBe(true);
    expect(markdown.trimEnd().endsWith(`${END_MARKER}\n\ntrailer`)).toBe(true);
    expect(markdown).not.toContain('old figures');
    const generated = markdown.slice(markdown.indexOf(START_MARKER), markdown.indexOf(END_MARKER));
    for (const target of results.targets) expect(generated).toContain(`\`${target.name}\``);
    expect(generated).toContain('### Lock flood');

    const charts = (await readdir(chartsDir)).sort();
    expect(charts).toEqual([
      'cleanup-timeline.svg',
      'cleanup.svg',
      'contention.svg',
      'create-after-deletes.svg',
      'create-preloaded.svg',
      'create.svg',
      'growth.svg',
      'http.svg',
      'mixed.svg',
      'read-missing.svg',
      'read.svg',
    ]);
    for (const chart of charts) {
      const svg = await readFile(join(chartsDir, chart), 'utf8');
      expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'), chart).toBe(true);
      expect(generated).toContain(`(benchmarks/${chart})`);
      assertWellFormedXml(svg);
    }
    const createChart = await readFile(join(chartsDir, 'create.svg'), 'utf8');
    for (const target of results.targets.filter((t) => t.status === 'ok'))
      expect(createChart).toContain(`>${target.name}<`);
  });

  it("drives each sessile store through toExpressStore with the peers' driver, and reports it like for like", async () => {
    for (const name of ['memory', 'sqlite', 'level', 'file']) {
      const via = results.targets.find((target) => target.viaExpressOf === name);
      expect(via?.name, name).toBe(`${name}-express`);
      if (via?.status !== 'ok') continue;
      for (const workload of ['create', 'read', 'mixed'] as const) {
        const outcome = results.results[workload]?.[via.name];
        expect(outcome?.status, `${workload} on ${via.name}`).toBe('ok');
        if (outcome?.status === 'ok') expect(outcome.result.errors).toBe(0);
      }
    }
    const docPath = join(outDir, 'headlines.md');
    await writeReport(results, docPath, join(outDir, 'headline-charts'));
    const markdown = await readFile(docPath, 'utf8');
    const memoryRow = markdown.split('\n').find((line) => line.startsWith('| `memory` '));
    // vs peer through the same API, native vs peer, and the adapter's cost: three figures each.
    expect(memoryRow?.match(/\d[\d.]*× \/ \d[\d.]*× \/ \d[\d.]*×/g)?.length).toBeGreaterThanOrEqual(
      3,
    );
  });

  it("rewrites only between a measured store's README markers", async () => {
    const packagesDir = join(outDir, 'packages');
    await mkdir(join(packagesDir, 'core'), { recursive: true });
    await mkdir(join(packagesDir, 'plain'), { recursive: true });
    await mkdir(join(packagesDir, 'no-readme'), { recursive: true });
    const [start, end] = storeMarkers('memory');
    const [otherStart, otherEnd] = storeMarkers('not-measured');
    const before = `# core\n\nprose before\n\n${start}\nold figures\n${end}\n\nprose between\n\n${otherStart}\nkept as is\n${otherEnd}\n\nprose after\n`;
    const plain = '# plain\n\n<!-- bench:start -->\nnot a store block\n<!-- bench:end -->\n';
    await writeFile(join(packagesDir, 'core', 'README.md'), before);
    await writeFile(join(packagesDir, 'plain', 'README.md'), plain);

    const changed = await writeStoreReadmes(results, packagesDir);
    expect(changed).toEqual([join(packagesDir, 'core', 'README.md')]);
    const after = await readFile(join(packagesDir, 'core', 'README.md'), 'utf8');
    const head = before.slice(0, before.indexOf(start) + start.length);
    const tail = before.slice(before.indexOf(end));
    expect(after.startsWith(head)).toBe(true);
    expect(after.endsWith(tail)).toBe(true);
    const block = after.slice(head.length, after.length - tail.length);
    expect(block).not.toContain('old figures');
    expect(block).toContain('`memorystore`');
    expect(block).toContain('toExpressStore');
    expect(await readFile(join(packagesDir, 'plain', 'README.md'), 'utf8')).toBe(plain);

    // A run that left out create, read and mixed (HTTP only, say) keeps the last block.
    const httpOnly: BenchResults = { ...results, results: { http: results.results.http } };
    expect(await writeStoreReadmes(httpOnly, packagesDir)).toEqual([]);
    expect(await readFile(join(packagesDir, 'core', 'README.md'), 'utf8')).toBe(after);

    // A second run over its own output changes nothing outside the block either.
    await writeStoreReadmes(results, packagesDir);
    expect(await readFile(join(packagesDir, 'core', 'README.md'), 'utf8')).toBe(after);
    expect(replaceBetween('no markers here', start, end, 'x')).toBeUndefined();
    expect(replaceBetween(`${end} ${start}`, start, end, 'x')).toBeUndefined();
  });
});

describe('the order targets run in', () => {
  it('runs each sessile store right before its express variant, its engine and its peers', () => {
    const order = comparisonOrder(TARGETS).map((target) => target.name);
    expect(new Set(order)).toEqual(new Set(TARGETS.map((target) => target.name)));
    const checked: string[] = [];
    for (const target of TARGETS) {
      if (target.kind !== 'sessile' || target.viaExpressOf !== undefined) continue;
      const compared = [
        ...TARGETS.filter((other) => other.viaExpressOf === target.name).map((other) => other.name),
        ...(target.engine === undefined ? [] : [target.engine]),
        ...(target.peers ?? []),
      ];
      const at = order.indexOf(target.name);
      // Every one of them follows at once, except those an earlier store (sqlite before
      // sqlite-full) already runs beside it.
      const following = compared.filter((name) => order.indexOf(name) > at);
      expect(order.slice(at + 1, at + 1 + following.length)).toEqual(following);
      if (following.length > 0) checked.push(target.name);
    }
    expect(checked).toEqual(expect.arrayContaining(['memory', 'sqlite', 'level', 'file', 'redis']));
  });
});

describe('ratios in the report', () => {
  const ok = <R>(runs: R[], result: R): Outcome<R> => ({ status: 'ok', result, spread: {}, runs });
  const ops = (rates: number[]) =>
    ok(
      rates.map((opsPerSec) => ({ opsPerSec })),
      { opsPerSec: [...rates].sort((a, b) => a - b)[1] as number },
    );

  it('takes the median of each repeat’s own ratio, not the ratio of two medians', () => {
    // Repeat by repeat: 2×, 0.5×, 2×. The medians alone (100 and 100) would say 1×.
    expect(pairedRatio(ops([100, 50, 200]), ops([50, 100, 100]), 'opsPerSec')).toBe(2);
  });

  it('falls back to the ratio of the medians when a target missed a repeat', () => {
    const missed = ok([{ opsPerSec: 50 }, { opsPerSec: 100 }], { opsPerSec: 75 });
    expect(pairedRatio(ops([100, 50, 200]), missed, 'opsPerSec')).toBeCloseTo(100 / 75);
  });

  it('pairs sessile() with express-session run by run, on the same store and against a peer', () => {
    const mode = (requestsPerSec: number): HttpModeResult => ({ status: 'ok', requestsPerSec });
    const http = (pairs: [number, number][]) => {
      const runs: HttpResult[] = pairs.map(([expressSession, sessile]) => ({
        requestsPerSec: expressSession,
        p99Ms: 1,
        expressSession: mode(expressSession),
        sessile: mode(sessile),
      }));
      return ok(runs, runs[1] as HttpResult);
    };
    // The dbm figures of one published run: 0.70×, 1.08×, 1.12× run by run.
    const dbm = http([
      [1229, 863],
      [844, 911],
      [1242, 1393],
    ]);
    const peer = http([
      [1000, 0],
      [500, 0],
      [1000, 0],
    ]);
    const byTarget = { dbm, 'session-file-store': peer };
    expect(sessileOver(byTarget, 'dbm', 'dbm')).toBeCloseTo(911 / 844);
    expect(sessileOver(byTarget, 'dbm', 'session-file-store')).toBeCloseTo(1393 / 1000);
  });

  it('takes the ratio of apps served in turns round by round, then the median over runs', () => {
    const mode = (requestsPerSec: number): HttpModeResult => ({ status: 'ok', requestsPerSec });
    type Rounds = { expressSession: number[]; sessile: number[]; peer: number[] };
    const run = ({ expressSession, sessile, peer }: Rounds): HttpResult => ({
      requestsPerSec: 1,
      p99Ms: 1,
      expressSession: mode(1),
      sessile: mode(1),
      peers: [{ name: 'memorystore', expressSession: mode(1), rounds: peer }],
      rounds: { expressSession, sessile },
    });
    // Round by round sessile() is 2× the peer and 1.5× express-session over the same store,
    // though the machine's pace changes tenfold between rounds.
    const runs = [
      run({ expressSession: [100, 1000, 10], sessile: [150, 1500, 15], peer: [75, 750, 7.5] }),
      run({ expressSession: [40, 400], sessile: [60, 600], peer: [30, 300] }),
      run({ expressSession: [10, 20, 30], sessile: [15, 30, 45], peer: [1, 15, 1] }),
    ];
    const memory = ok(runs, runs[0] as HttpResult);
    // The peer's own step, measured at another time, is not what the ratio pairs with.
    const memorystore = ok(
      [run({ expressSession: [], sessile: [], peer: [] })],
      runs[0] as HttpResult,
    );
    const byTarget = { memory, memorystore };
    expect(sessileOver(byTarget, 'memory', 'memory')).toBeCloseTo(1.5);
    expect(sessileOver(byTarget, 'memory', 'memorystore')).toBeCloseTo(2);
  });
});
