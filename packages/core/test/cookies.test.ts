import { afterEach, describe, expect, it } from 'vitest';
import {
  ExpressSessionCookie,
  generateSessionId,
  MAX_COOKIE_AGE_MS,
  MemoryStore,
  MIN_SECRET_LENGTH,
  manual,
  SessionCookie,
  type SessionCookieOptions,
  SessionManager,
  type SessionManagerOptions,
} from '../src/index.js';

const OLD = 'an old secret that signed earlier cookies';
const NEW = 'the new secret that signs every cookie now';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

function refusal(options: unknown): string {
  try {
    new SessionCookie(options as SessionCookieOptions);
  } catch (error) {
    expect(error).toBeInstanceOf(TypeError);
    return (error as Error).message;
  }
  throw new Error('expected the options to be refused');
}

/** A request's `Cookie` header carrying `signed`. */
function header(cookie: SessionCookie, signed: string): string {
  return `other=1; ${cookie.name}=${encodeURIComponent(signed)}`;
}

describe('SessionCookie secrets', () => {
  it(`refuses a secret shorter than ${MIN_SECRET_LENGTH} characters, in a list too, without echoing it`, () => {
    const short = 'x'.repeat(MIN_SECRET_LENGTH - 1);
    for (const secrets of ['k', short, [NEW, short], [short, NEW]]) {
      const message = refusal({ secrets });
      expect(message).toMatch(/^SessionCookie: secrets(\[\d\])? must be at least 32 characters/);
      expect(message).not.toContain(short);
    }
    expect(refusal({ secrets: [NEW, short] })).toContain('secrets[1]');
    expect(() => new SessionCookie({ secrets: 'x'.repeat(MIN_SECRET_LENGTH) })).not.toThrow();
  });

  it('refuses a missing, empty or non-string secret, naming the option', () => {
    for (const secrets of [undefined, '', [], [NEW, 42], null]) {
      expect(refusal({ secrets })).toMatch(/^SessionCookie: secrets/);
    }
  });

  it('refuses a secret with a lone surrogate, which signs as U+FFFD whatever it was', () => {
    expect(refusal({ secrets: '\uD800'.repeat(32) })).toMatch(
      /^SessionCookie: secrets must be well-formed Unicode/,
    );
    expect(refusal({ secrets: [NEW, `${NEW}\uDFFF`] })).toMatch(
      /^SessionCookie: secrets\[1\] must be well-formed Unicode/,
    );
  });

  it("names the wrapper's own options when given a naming", () => {
    const naming = { where: 'sessile()', secrets: 'secret', attributesIn: 'cookie' };
    const attempt = (options: object) => {
      try {
        new SessionCookie(options as SessionCookieOptions, naming);
      } catch (error) {
        return (error as Error).message;
      }
      return 'accepted';
    };
    expect(attempt({ secrets: 'short' })).toMatch(/^sessile\(\): secret must be at least 32/);
    expect(attempt({ secrets: undefined })).toMatch(/^sessile\(\): secret must be a string/);
    expect(attempt({ secrets: NEW, sameSite: 'none' })).toMatch(
      /^sessile\(\): cookie\.sameSite 'none' needs cookie\.secure: true/,
    );
    expect(attempt({ secrets: NEW, maxAge: 1000 })).toBe(
      "sessile() cookie: unknown option 'maxAge'; did you mean 'maxAgeMs'?",
    );
  });
});

describe('SessionCookie attributes', () => {
  it("refuses sameSite 'none' without secure, since browsers reject that cookie", () => {
    expect(refusal({ secrets: NEW, sameSite: 'none' })).toMatch(
      /sameSite 'none' needs secure: true/,
    );
    const cookie = new SessionCookie({ secrets: NEW, sameSite: 'none', secure: true });
    expect(cookie.serialize('value').split('; ')).toEqual(
      expect.arrayContaining(['SameSite=None', 'Secure']),
    );
  });

  it('refuses an empty domain, and a path that is empty or does not start with /', () => {
    expect(refusal({ secrets: NEW, domain: '' })).toMatch(/^SessionCookie: domain must be/);
    expect(refusal({ secrets: NEW, path: '' })).toMatch(/^SessionCookie: path must be/);
    for (const path of ['app', 'app/']) {
      expect(refusal({ secrets: NEW, path })).toMatch(/^SessionCookie: path must start with \//);
    }
    const cookie = new SessionCookie({ secrets: NEW, path: '/app', domain: 'example.com' });
    expect(cookie.serialize('value').split('; ')).toEqual(
      expect.arrayContaining(['Path=/app', 'Domain=example.com']),
    );
  });

  it('refuses __Secure- and __Host- names whose attributes browsers would reject, in any case', () => {
    for (const name of ['__Secure-sid', '__Host-sid', '__host-sid']) {
      expect(refusal({ secrets: NEW, name })).toMatch(/needs secure: true; browsers reject/);
    }
    for (const extra of [{ domain: 'example.com' }, { path: '/app' }]) {
      expect(refusal({ secrets: NEW, name: '__Host-sid', secure: true, ...extra })).toMatch(
        /needs no domain and path '\/'/,
      );
    }
    const host = new SessionCookie({ secrets: NEW, name: '__Host-sid', secure: true });
    expect(host.serialize('value')).toMatch(/^__Host-sid=.*; Path=\/; HttpOnly; Secure/);
    const scoped = { secrets: NEW, name: '__Secure-sid', secure: true, domain: 'example.com' };
    expect(new SessionCookie(scoped).serialize('v')).toContain('Domain=example.com');
  });

  it("secure 'auto' sets Secure only for a secure request, on the cookie and its clear alike", () => {
    const cookie = new SessionCookie({ secrets: NEW, secure: 'auto', maxAgeMs: 60_000 });
    const plain = cookie.serialize('value').split('; ');
    const secure = cookie.serialize('value', Date.now(), true).split('; ');
    expect(plain).not.toContain('Secure');
    expect(secure).toContain('Secure');
    expect(secure.filter((part) => part !== 'Secure').slice(1, -2)).toEqual(plain.slice(1, -2));
    expect(cookie.serializeClear().split('; ')).not.toContain('Secure');
    expect(cookie.serializeClear(true).split('; ')).toEqual(
      expect.arrayContaining(['Secure', 'HttpOnly', 'SameSite=Lax', 'Max-Age=0']),
    );
    // true and false ignore the request's security.
    const always = new SessionCookie({ secrets: NEW, secure: true });
    expect(always.serialize('value').split('; ')).toContain('Secure');
    expect(always.serializeClear().split('; ')).toContain('Secure');
    const never = new SessionCookie({ secrets: NEW });
    expect(never.serialize('value', Date.now(), true).split('; ')).not.toContain('Secure');
    expect(never.serializeClear(true).split('; ')).not.toContain('Secure');
  });

  it('sets Partitioned (CHIPS) when asked, on the cookie and its clear, only beside Secure', () => {
    const partitioned = new SessionCookie({
      secrets: NEW,
      secure: true,
      sameSite: 'none',
      partitioned: true,
    });
    expect(partitioned.serialize('value').split('; ')).toEqual(
      expect.arrayContaining(['Secure', 'SameSite=None', 'Partitioned']),
    );
    expect(partitioned.serializeClear().split('; ')).toEqual(
      expect.arrayContaining(['Secure', 'Partitioned', 'Max-Age=0']),
    );
    const plain = new SessionCookie({ secrets: NEW, secure: true });
    expect(plain.serialize('value').split('; ')).not.toContain('Partitioned');
    // Under 'auto', a plain-HTTP response has no Secure, so no Partitioned either.
    const auto = new SessionCookie({ secrets: NEW, secure: 'auto', partitioned: true });
    expect(auto.serialize('value').split('; ')).not.toContain('Partitioned');
    expect(auto.serialize('value', Date.now(), true).split('; ')).toEqual(
      expect.arrayContaining(['Secure', 'Partitioned']),
    );
    expect(auto.serializeClear(true).split('; ')).toContain('Partitioned');
    expect(auto.serializeClear().split('; ')).not.toContain('Partitioned');
  });

  it('refuses partitioned without secure, and a partitioned that is not a boolean', () => {
    expect(refusal({ secrets: NEW, partitioned: true })).toBe(
      "SessionCookie: partitioned needs secure: true or 'auto'; browsers reject a Partitioned cookie without Secure",
    );
    expect(refusal({ secrets: NEW, secure: false, partitioned: true })).toMatch(
      /^SessionCookie: partitioned needs secure/,
    );
    expect(refusal({ secrets: NEW, secure: true, partitioned: 'yes' })).toBe(
      "SessionCookie: partitioned must be true or false, got 'yes' (a string)",
    );
    expect(new SessionCookie({ secrets: NEW, partitioned: false }).name).toBe('sid');
  });

  it("secure 'auto' allows sameSite 'none', and refuses a __Secure- or __Host- name", () => {
    const cookie = new SessionCookie({ secrets: NEW, secure: 'auto', sameSite: 'none' });
    expect(cookie.serialize('value', Date.now(), true).split('; ')).toEqual(
      expect.arrayContaining(['SameSite=None', 'Secure']),
    );
    for (const name of ['__Secure-sid', '__Host-sid', '__host-sid']) {
      expect(refusal({ secrets: NEW, name, secure: 'auto' })).toMatch(
        new RegExp(`^SessionCookie: name '${name}' needs secure: true, not 'auto'`),
      );
    }
  });

  it("refuses unknown options, pointing express-session's maxAge to maxAgeMs", () => {
    expect(refusal({ secrets: NEW, maxAge: 60_000 })).toBe(
      "SessionCookie: unknown option 'maxAge'; did you mean 'maxAgeMs'?",
    );
    expect(refusal({ secret: NEW })).toMatch(/unknown option 'secret'; did you mean 'secrets'/);
    expect(refusal({ secrets: NEW, foo: 1, maxAge: 1 })).toBe(
      "SessionCookie: unknown options 'foo' and 'maxAge' (did you mean 'maxAgeMs'?)",
    );
  });

  it('refuses a maxAgeMs that is not a duration from 1 ms to 400 days', () => {
    for (const maxAgeMs of [0, -1, Number.NaN, '60000', Number.POSITIVE_INFINITY]) {
      expect(refusal({ secrets: NEW, maxAgeMs })).toMatch(/^SessionCookie: maxAgeMs must be/);
    }
    expect(refusal({ secrets: NEW, maxAgeMs: MAX_COOKIE_AGE_MS + 1 })).toMatch(/400 days/);
    const longest = new SessionCookie({ secrets: NEW, maxAgeMs: MAX_COOKIE_AGE_MS });
    expect(longest.serialize('value')).toContain(`Max-Age=${MAX_COOKIE_AGE_MS / 1000}`);
  });

  it('never writes Max-Age=0, which would delete the cookie, for a sub-second maxAgeMs', () => {
    const cookie = new SessionCookie({ secrets: NEW, maxAgeMs: 500 });
    expect(cookie.serialize('value').split('; ')).toContain('Max-Age=1');
  });

  it('refuses attribute values of the wrong type', () => {
    expect(refusal({ secrets: NEW, secure: 'yes' })).toMatch(
      /secure must be true, false or 'auto'/,
    );
    expect(refusal({ secrets: NEW, httpOnly: 1 })).toMatch(/httpOnly must be true or false/);
    expect(refusal({ secrets: NEW, path: '/a; b' })).toMatch(/path must be cookie attribute/);
    expect(refusal({ secrets: NEW, name: 'a b' })).toMatch(/name must be a cookie name/);
  });
});

describe('SessionCookie signing and rotation', () => {
  it('verifies cookies signed by any of its secrets and says whether an old one signed it', () => {
    const before = new SessionCookie({ secrets: OLD });
    const during = new SessionCookie({ secrets: [NEW, OLD] });
    expect(during.verify(header(during, before.sign('abc')))).toEqual({
      value: 'abc',
      signedWithOldSecret: true,
    });
    expect(during.verify(header(during, during.sign('abc')))).toEqual({
      value: 'abc',
      signedWithOldSecret: false,
    });
    expect(during.read(header(during, before.sign('abc')))).toBe('abc');
    expect(new SessionCookie({ secrets: NEW }).verify(header(during, before.sign('abc')))).toBe(
      undefined,
    );
    expect(during.verify(header(during, `${before.sign('abc')}x`))).toBeUndefined();
  });

  it('checks at most 8 cookies of its name, so a header of thousands costs no more than 8', () => {
    const cookie = new SessionCookie({ secrets: [NEW, OLD] });
    const valid = `${cookie.name}=${encodeURIComponent(cookie.sign('abc'))}`;
    const forged = (count: number, signature: string) =>
      Array.from({ length: count }, (_, i) => `${cookie.name}=v${i}.${signature}`).join('; ');
    const wellShaped = 'x'.repeat(43);
    // Duplicates from other paths or domains still find the valid one among the first 8.
    expect(cookie.read(`${forged(7, wellShaped)}; ${valid}`)).toBe('abc');
    expect(cookie.read(`${valid}; ${forged(2000, wellShaped)}`)).toBe('abc');
    expect(cookie.read(`${forged(8, wellShaped)}; ${valid}`)).toBeUndefined();
    // A signature of the wrong length is refused before any HMAC, however many there are.
    expect(cookie.read(`${forged(2000, 'b')}; ${valid}`)).toBeUndefined();
    expect(cookie.read(`${forged(7, 'b')}; ${valid}`)).toBe('abc');
  });

  it('lists every validly signed id when a request sends several cookies of its name, in order', () => {
    const cookie = new SessionCookie({ secrets: [NEW, OLD] });
    const old = new SessionCookie({ secrets: OLD });
    const pair = (first: string, second: string) =>
      `sid=${encodeURIComponent(first)}; other=1; sid=${encodeURIComponent(second)}`;
    expect(cookie.verify(pair(old.sign('stale'), cookie.sign('live')))).toEqual({
      value: 'stale',
      signedWithOldSecret: true,
      values: ['stale', 'live'],
    });
    // One valid cookie among forgeries, or the same id twice, is a single id as before.
    expect(cookie.verify(pair('forged.x', cookie.sign('live')))).toEqual({
      value: 'live',
      signedWithOldSecret: false,
    });
    expect(cookie.verify(pair(cookie.sign('live'), old.sign('live')))).toEqual({
      value: 'live',
      signedWithOldSecret: false,
    });
  });

  describe('forResponse', () => {
    async function setup(options: Partial<SessionManagerOptions> = {}) {
      const store = new MemoryStore();
      const manager = new SessionManager({ store, cleanup: manual(), ...options });
      cleanups.push(async () => {
        await manager.close();
        await store.close();
      });
      const first = await manager.open(undefined);
      first.data.count = 1;
      await first.commit();
      return { manager, id: first.id };
    }
    const before = new SessionCookie({ secrets: OLD });
    const during = new SessionCookie({ secrets: [NEW, OLD] });
    const now = new SessionCookie({ secrets: NEW });

    it('re-signs a cookie an old secret signed, whatever the commit did to a live session', async () => {
      const { manager, id } = await setup();
      const received = during.verify(header(during, before.sign(id)));
      for (const change of ['none', 'modify'] as const) {
        const session = await manager.open(id);
        if (change === 'modify') session.data.count = 2;
        // Predicted before the commit (headers first), and from the commit's outcome.
        const predicted = during.forResponse(session, received, undefined, 60_000);
        const outcome = await session.commit();
        expect(outcome).toBe(change === 'none' ? 'unchanged' : 'saved');
        for (const setCookie of [predicted, during.forResponse(session, received, outcome, 0)]) {
          const value = decodeURIComponent(setCookie?.split(';')[0]?.split('=')[1] ?? '');
          expect(now.unsign(value)).toBe(id);
        }
      }
      const touched = await manager.open(id);
      await touched.commit();
      expect(during.forResponse(touched, received, 'touched', 0)).toMatch(/^sid=[^;]+\./);
    });

    it("carries Secure under secure 'auto' only for a secure request, on a new cookie and on a logout's clear", async () => {
      const { manager } = await setup();
      const auto = new SessionCookie({ secrets: NEW, secure: 'auto' });
      for (const secure of [false, true]) {
        const session = await manager.open(undefined);
        session.data.user = 'ada';
        const outcome = await session.commit();
        const [set] = auto.responseHeaders(session, undefined, outcome, 60_000, secure);
        expect(set?.split('; ').includes('Secure')).toBe(secure);
        const received = auto.verify(header(auto, auto.sign(session.id)));
        const again = await manager.open(session.id);
        await again.invalidate();
        const destroyed = await again.commit();
        const clear = auto.forResponse(again, received, destroyed, 60_000, secure);
        expect(clear).toMatch(/Max-Age=0/);
        expect(clear?.split('; ').includes('Secure')).toBe(secure);
      }
    });

    it('opens the live session of a later cookie when the first names none, and sets it again under its own path', async () => {
      const { manager, id: live } = await setup();
      const gone = await manager.open(undefined);
      gone.data.count = 5;
      await gone.commit();
      expect(await manager.revoke(gone.id)).toBe(true);
      // A cookie left under an old path comes first: a browser sends the longer path first.
      const received = now.verify(
        `sid=${encodeURIComponent(now.sign(gone.id))}; sid=${encodeURIComponent(now.sign(live))}`,
      );
      expect(received?.values).toEqual([gone.id, live]);
      const session = await manager.open(received?.values ?? null);
      expect([session.id, session.data]).toEqual([live, { count: 1 }]);
      const outcome = await session.commit();
      expect(outcome).toBe('unchanged');
      const setCookie = now.forResponse(session, received, outcome, 60_000);
      expect(now.unsign(decodeURIComponent(setCookie?.split(';')[0]?.split('=')[1] ?? ''))).toBe(
        live,
      );
      // The live one first: opened as before, and nothing to set.
      const first = now.verify(
        `sid=${encodeURIComponent(now.sign(live))}; sid=${encodeURIComponent(now.sign(gone.id))}`,
      );
      const again = await manager.open(first?.values ?? null);
      expect(again.id).toBe(live);
      expect(now.forResponse(again, first, await again.commit(), 60_000)).toBeUndefined();
      // None live, or only reserved ids: a fresh session.
      const fresh = await manager.open([gone.id, '_sessile-sweeper_', 'short']);
      expect([fresh.isNew, fresh.id === gone.id]).toEqual([true, false]);
      await fresh.commit();
    });

    it("prefers a login's new id in a later cookie to the id it retired in an earlier one", async () => {
      const { manager, id: oldId } = await setup({ regenerateGraceMs: 60_000 });
      const login = await manager.open(oldId);
      await login.regenerate();
      login.data.user = 'ada';
      await login.commit();
      const session = await manager.open([oldId, login.id]);
      expect([session.id, session.retired, session.data]).toEqual([
        login.id,
        false,
        { count: 1, user: 'ada' },
      ]);
      await session.commit();
      // Alone, or before ids that name nothing, the retired id still serves its grace window.
      const graced = await manager.open([oldId, generateSessionId()]);
      expect([graced.id, graced.retired]).toEqual([oldId, true]);
      await graced.commit();
    });

    it('never sets the cookie of an id another request regenerated in its grace window, persistent or re-signed', async () => {
      const { manager, id: oldId } = await setup({ regenerateGraceMs: 60_000, touchAfterMs: 0 });
      const login = await manager.open(oldId);
      await login.regenerate();
      await login.commit();
      const persistent = new SessionCookie({ secrets: [NEW, OLD], maxAgeMs: 60_000 });
      for (const signed of [persistent.sign(oldId), before.sign(oldId)]) {
        const received = persistent.verify(header(persistent, signed));
        for (const change of ['none', 'modify'] as const) {
          const late = await manager.open(oldId);
          expect([late.id, late.retired]).toEqual([oldId, true]);
          if (change === 'modify') late.data.count = (late.data.count as number) + 1;
          const predicted = persistent.forResponse(late, received, undefined, 0);
          const outcome = await late.commit();
          expect(outcome).toBe(change === 'modify' ? 'saved' : 'unchanged');
          expect([predicted, persistent.forResponse(late, received, outcome, 0)]).toEqual([
            undefined,
            undefined,
          ]);
        }
      }
      // Nor a clear of express-session's cookie when it goes by the same name as this one.
      const adopting = new SessionCookie(
        { secrets: NEW, name: 'connect.sid', maxAgeMs: 60_000 },
        undefined,
        new ExpressSessionCookie({}, NEW, 'test'),
      );
      const fromExpress = adopting.verify(
        `connect.sid=${encodeURIComponent(new ExpressSessionCookie({}, NEW, 'test').sign(oldId))}`,
      );
      expect(fromExpress).toMatchObject({ value: oldId, fromExpressSession: true });
      const adopted = await manager.open(oldId);
      expect(adopting.responseHeaders(adopted, fromExpress, await adopted.commit(), 0)).toEqual([]);
      // A retired session that regenerates in turn gets its new id's cookie.
      const again = await manager.open(oldId);
      await again.regenerate();
      const received = persistent.verify(header(persistent, persistent.sign(oldId)));
      expect(again.retired).toBe(false);
      expect(persistent.forResponse(again, received, await again.commit(), 0)).toContain(
        encodeURIComponent(persistent.sign(again.id)).slice(0, 20),
      );
    });

    it('leaves a cookie the first secret signed alone, and still clears one whose session is gone', async () => {
      const { manager, id } = await setup();
      const current = during.verify(header(during, during.sign(id)));
      const session = await manager.open(id);
      expect(during.forResponse(session, current, await session.commit(), 0)).toBeUndefined();

      const old = during.verify(header(during, before.sign(id)));
      const ending = await manager.open(id);
      await ending.invalidate();
      expect(during.forResponse(ending, old, await ending.commit(), 0)).toMatch(/Max-Age=0/);
    });
  });
});
