/**
 * Which part of a shared resource (a table of one connection, a sublevel of one database) each
 * open store of this process uses. Two stores on one part would each keep their own in-process
 * locks over the same records, so both could hold one session's lock.
 */
export class ResourceClaims {
  // Weak, so a resource the app drops takes its claims with it.
  readonly #claimed = new WeakMap<object, Set<string>>();

  /**
   * Claims the part `name` of `resource` for one store. Returns the release, or `undefined`
   * when another open store holds it.
   */
  claim(resource: object, name: string): (() => void) | undefined {
    let names = this.#claimed.get(resource);
    if (names === undefined) {
      names = new Set();
      this.#claimed.set(resource, names);
    }
    if (names.has(name)) return undefined;
    names.add(name);
    const held = names;
    return () => {
      held.delete(name);
    };
  }
}
