const SESSION = Symbol('sessile session');

/**
 * Returns what sets a request's (or context's) `session` to its `Session`, as a property that
 * cannot be assigned: `req.session = null` logs out with cookie-session, with express-session's
 * `unset: 'destroy'` and with koa-session, and here would leave the session stored and its cookie
 * valid, the user signed in without a word. Assigning throws a `TypeError` with `refusal`, which
 * should say how to log out. One getter and setter serve every request, so each keeps one shape.
 */
export function sessionProperty(refusal: string): (holder: object, session: object) => void {
  const descriptor: PropertyDescriptor = {
    get(this: { [SESSION]?: unknown }) {
      return this[SESSION];
    },
    set() {
      throw new TypeError(refusal);
    },
    enumerable: true,
    configurable: true,
  };
  return (holder, session) => {
    (holder as { [SESSION]?: unknown })[SESSION] = session;
    Object.defineProperty(holder, 'session', descriptor);
  };
}
