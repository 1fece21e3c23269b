import { ResourceClaims } from '@sessile/core/store';

/**
 * The sublevels open stores use, by root database. Two stores on one sublevel would each keep
 * their own in-process locks and sweep position over the same keys: both could hold one
 * session's lock, and one's sweep would step over the records the other wrote below it.
 */
const claimed = new ResourceClaims();

/**
 * Claims `sublevel` of the app's `db` for one store. Returns the release, or `undefined` when
 * another open store holds it.
 */
export function claimSublevel(
  sublevel: object,
  db: object,
  name: string,
): (() => void) | undefined {
  const { db: root, prefix } = sublevel as { db?: unknown; prefix?: unknown };
  // abstract-level names a sublevel's root database and its prefix from the root.
  const owner = typeof root === 'object' && root !== null ? root : db;
  return claimed.claim(owner, typeof prefix === 'string' ? prefix : name);
}
