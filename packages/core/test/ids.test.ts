import { describe, expect, it } from 'vitest';
import { generateSessionId, isSessionError, isSessionId, SessionError } from '../src/index.js';
import { assertSessionId, generateToken } from '../src/store.js';

describe('session ids', () => {
  it('generates 43-character base64url ids that pass validation and never repeat', () => {
    const ids = new Set(Array.from({ length: 10_000 }, () => generateSessionId()));
    expect(ids.size).toBe(10_000);
    for (const id of ids) {
      expect(id).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(isSessionId(id)).toBe(true);
    }
  });

  it('accepts 16 to 128 base64url characters and nothing else', () => {
    expect(isSessionId('a'.repeat(16))).toBe(true);
    expect(isSessionId('a'.repeat(128))).toBe(true);
    for (const bad of [
      'a'.repeat(15),
      'a'.repeat(129),
      `${'a'.repeat(16)}=`,
      `${'a'.repeat(16)}+`,
      `${'a'.repeat(16)}\n`,
      `.${'a'.repeat(16)}`,
      `${'a'.repeat(8)}/${'a'.repeat(8)}`,
      `${'a'.repeat(8)}é${'a'.repeat(8)}`,
      `${'a'.repeat(16)}😀`,
      42,
      null,
    ]) {
      expect(isSessionId(bad)).toBe(false);
    }
  });

  it('an id checked just before passes again, and an id differing from it in one character is still checked', () => {
    const id = generateSessionId();
    expect(isSessionId(id)).toBe(true);
    expect(isSessionId(id)).toBe(true);
    const bad = `${id.slice(0, -1)}!`;
    expect(isSessionId(bad)).toBe(false);
    expect(() => assertSessionId(bad)).toThrow(SessionError);
    expect(isSessionId(`${id.slice(0, -1)}`.padEnd(129, 'a'))).toBe(false);
  });

  it('assertSessionId throws ERR_INVALID_SESSION_ID without echoing the id', () => {
    const secretLooking = `../${'s'.repeat(30)}`;
    let caught: unknown;
    try {
      assertSessionId(secretLooking);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(SessionError);
    expect(isSessionError(caught, 'ERR_INVALID_SESSION_ID')).toBe(true);
    expect((caught as Error).message).not.toContain(secretLooking);
  });

  it('generates unique lock tokens', () => {
    const tokens = new Set(Array.from({ length: 1000 }, () => generateToken()));
    expect(tokens.size).toBe(1000);
  });
});

describe('SessionError', () => {
  it('keeps its code and cause, and is recognised across copies by name and code', () => {
    const cause = new Error('disk on fire');
    const error = new SessionError('ERR_STORE_IO', 'write failed', { cause });
    expect(error.code).toBe('ERR_STORE_IO');
    expect(error.cause).toBe(cause);
    expect(error.name).toBe('SessionError');
    const lookalike = Object.assign(new Error('x'), {
      name: 'SessionError',
      code: 'ERR_LOCK_LOST',
    });
    expect(isSessionError(lookalike, 'ERR_LOCK_LOST')).toBe(true);
    expect(isSessionError(lookalike, 'ERR_STORE_IO')).toBe(false);
    expect(isSessionError(new Error('plain'))).toBe(false);
  });
});
