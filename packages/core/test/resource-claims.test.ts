import { describe, expect, it } from 'vitest';
import { ResourceClaims } from '../src/store.js';

describe('ResourceClaims', () => {
  it('refuses a part another store holds until its release, and only that part of that resource', () => {
    const claims = new ResourceClaims();
    const database = {};
    const release = claims.claim(database, 'sessions');
    expect(release).toBeTypeOf('function');
    expect(claims.claim(database, 'sessions')).toBeUndefined();
    // Another part of the same resource, and the same part of another resource, are free.
    expect(claims.claim(database, 'other')).toBeTypeOf('function');
    expect(claims.claim({}, 'sessions')).toBeTypeOf('function');
    release?.();
    expect(claims.claim(database, 'sessions')).toBeTypeOf('function');
  });
});
