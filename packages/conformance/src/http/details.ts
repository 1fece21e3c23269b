import {
  generateSessionId,
  isSessionError,
  MemoryStore,
  type MemoryStoreOptions,
  type SweepRun,
  sweepByChance,
} from '@sessile/core';
import { describe, expect, it } from 'vitest';
import { delay } from '../helpers.js';
import { gate } from './app.js';
import { CookieJar } from './cookie-jar.js';
import type { Harness } from './harness.js';

/** Hang-ups, commit failures, cookie attributes and cleanup, which no store changes. */
export function detailScenarios(harness: Harness, commitFailureBody: string): void {
  const { start } = harness;
  async function memoryStore(options: MemoryStoreOptions = {}) {
    const store = new MemoryStore(options);
    harness.defer(() => store.close());
    return store;
  }
  const test = (name: string, body: () => Promise<void>) => it(name, body, 120_000);

  describe('details', () => {
    test('releases the lock when the client hangs up before the response', async () => {
      const hang = gate();
      const { url } = await start(await memoryStore(), {}, { hang });
      const jar = new CookieJar();
      await jar.json(`${url}/increment`, { method: 'POST' });
      const abort = new AbortController();
      const hanging = jar
        .clone()
        .fetch(`${url}/hang`, { signal: abort.signal })
        .catch(() => undefined);
      await hang.reached;
      abort.abort();
      await hanging;
      expect(await jar.json(`${url}/increment`, { method: 'POST' })).toMatchObject({ count: 2 });
    });

    test('answers 500 and stores nothing when the commit fails', async () => {
      const store = await memoryStore({ maxRecordBytes: 1024 });
      const { url, errors } = await start(store);
      const jar = new CookieJar();
      await jar.json(`${url}/increment`, { method: 'POST' });
      const response = await jar.fetch(`${url}/big`, { method: 'POST' });
      expect(response.status).toBe(500);
      expect(await response.text()).toBe(commitFailureBody);
      expect(errors.some((error) => isSessionError(error, 'ERR_RECORD_TOO_LARGE'))).toBe(true);
      expect(await jar.json(`${url}/increment`, { method: 'POST' })).toMatchObject({ count: 2 });
    });

    test("sends the handler's answer when only a touch fails (the session was only read), and a 500 when a save fails", async () => {
      // The store closes under each request (an app shutting it down, a disk gone).
      for (const change of [false, true]) {
        const store = await memoryStore();
        const read = gate();
        const late = gate();
        // Every unmodified commit touches.
        const { url, errors } = await start(store, { touchAfterMs: 0 }, { read, late });
        const jar = new CookieJar();
        await jar.json(`${url}/increment`, { method: 'POST' });
        const responding = change
          ? jar.fetch(`${url}/late-write`, { method: 'POST' })
          : jar.fetch(`${url}/count-later`);
        await (change ? late : read).reached;
        await store.close();
        (change ? late : read).open();
        const response = await responding;
        if (change) {
          expect(response.status).toBe(500);
          expect(await response.text()).toBe(commitFailureBody);
        } else {
          expect(response.status).toBe(200);
          expect(await response.json()).toEqual({ count: 1 });
        }
        // The expiry did not move, nor was anything saved: no cookie says either did.
        expect(response.headers.getSetCookie()).toEqual([]);
        expect(errors.filter((error) => isSessionError(error, 'ERR_STORE_CLOSED'))).toHaveLength(1);
      }
    });

    test('clears the cookie on logout', async () => {
      const { url } = await start(await memoryStore());
      const jar = new CookieJar();
      await jar.json(`${url}/increment`, { method: 'POST' });
      const response = await jar.fetch(`${url}/logout`, { method: 'POST' });
      expect(response.headers.getSetCookie()[0]).toMatch(/^sid=; .*Max-Age=0/);
      expect(jar.cookies.has('sid')).toBe(false);
    });

    test('writes the cookie options it was given, and clears that cookie on logout', async () => {
      const { url } = await start(await memoryStore(), {
        cookie: {
          name: 'app.sid',
          secure: true,
          sameSite: 'strict',
          path: '/app',
          domain: 'example.test',
          maxAgeMs: 3_600_000,
        },
      });
      const response = await fetch(`${url}/increment`, { method: 'POST' });
      const header = response.headers.getSetCookie()[0] ?? '';
      expect(header).toMatch(/^app\.sid=[^;]+\./);
      for (const attribute of [
        'Path=/app',
        'Domain=example.test',
        'HttpOnly',
        'Secure',
        'SameSite=Strict',
        'Max-Age=3600',
      ]) {
        expect(header.split('; ')).toContain(attribute);
      }
      expect(header).toMatch(/Expires=/);

      const jar = new CookieJar();
      jar.remember(response);
      const logout = await jar.fetch(`${url}/logout`, { method: 'POST' });
      expect(logout.headers.getSetCookie()[0]).toMatch(/^app\.sid=; .*Max-Age=0/);
    });

    test('keeps the default path / and HttpOnly when other cookie options are given', async () => {
      const { url } = await start(await memoryStore(), {
        cookie: { name: 'app.sid', secure: true, sameSite: 'strict', maxAgeMs: 3_600_000 },
      });
      const response = await fetch(`${url}/increment`, { method: 'POST' });
      const header = response.headers.getSetCookie()[0] ?? '';
      expect(header).toMatch(/^app\.sid=[^;]+\./);
      for (const attribute of ['Path=/', 'HttpOnly', 'Secure', 'SameSite=Strict', 'Max-Age=3600']) {
        expect(header.split('; ')).toContain(attribute);
      }
    });

    test('triggers sweepByChance after each response, off the request path', async () => {
      const store = await memoryStore();
      const runs: SweepRun[] = [];
      const { url } = await start(store, {
        cleanup: sweepByChance(1),
        onSweep: (run) => runs.push(run),
      });
      await store.set(generateSessionId(), {
        data: new Uint8Array(2),
        expiresAt: Date.now() + 20,
      });
      await delay(50);
      expect(runs).toHaveLength(0);
      await fetch(`${url}/count`);
      for (let i = 0; i < 500 && runs.length === 0; i++) await delay(10);
      expect(runs[0]).toMatchObject({ outcome: 'swept', removed: 1 });
    });
  });
}
