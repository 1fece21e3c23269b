import { lstat, mkdir, readlink, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import {
  danglingLinkAbove,
  errorMessage,
  probeStoreDirectory,
  type StoreDirectoryRules,
  type StoreProbe,
} from '@sessile/core/store';

/** The database file's directory when it is missing (and `open` makes it), else `undefined`. */
export async function missingDirectoryOf(path: string): Promise<string | undefined> {
  const directory = dirname(resolve(path));
  try {
    await stat(directory);
    return undefined;
  } catch (error) {
    // A file in the way or no access: SQLite's open fails there, and `explain` says why.
    return (error as NodeJS.ErrnoException).code === 'ENOENT' ? directory : undefined;
  }
}

/** Why the store cannot make or use the place of its database file, with the error behind it. */
export interface PlaceRefusal {
  reason: string;
  cause: unknown;
}

/**
 * Makes the missing directories above the database file, as the stores kept in a directory make
 * theirs: SQLite creates only the file. Resolves why it could not, for `open`'s error. Call after
 * the path is known not to be on a kernel pseudo-filesystem, since a recursive `mkdir` never
 * returns on some `/proc` paths.
 */
export async function makeDatabaseDirectory(path: string): Promise<PlaceRefusal | undefined> {
  const directory = await missingDirectoryOf(path);
  if (directory === undefined) return linkIntoMissingDirectory(path);
  try {
    await mkdir(directory, { recursive: true });
    return undefined;
  } catch (error) {
    // Node's recursive mkdir says ENOENT on a read-only filesystem; the probe finds the reason.
    const found = await probeNewDirectory(path, directory).catch(() => undefined);
    const refused = found?.state === 'refused' ? found : undefined;
    return {
      reason: `cannot create its directory ${directory}: ${refused?.reason ?? errorMessage(error)}`,
      cause: refused?.cause ?? error,
    };
  }
}

/**
 * Why SQLite cannot create the file at `path`: a symbolic link, or a chain of them, to a missing
 * file in a missing directory. SQLite follows the link, then says only "unable to open database
 * file"; the store makes the directories of `path`, not of a link's target. `undefined` otherwise.
 */
export async function linkIntoMissingDirectory(path: string): Promise<PlaceRefusal | undefined> {
  let at = resolve(path);
  // Linux follows at most 40 links; past that SQLite's own error says why.
  for (let hops = 0; hops <= 40; hops++) {
    const entry = await lstat(at).catch(() => undefined);
    if (entry === undefined) {
      if (hops === 0) return undefined;
      const directory = dirname(at);
      const cause = await stat(directory).then(
        () => undefined,
        (error: unknown) => error,
      );
      if (cause === undefined) return undefined;
      return {
        reason: `it is a symbolic link to ${at}, whose directory ${directory} does not exist`,
        cause,
      };
    }
    if (!entry.isSymbolicLink()) return undefined;
    const target = await readlink(at).catch(() => undefined);
    if (target === undefined) return undefined;
    at = resolve(dirname(at), target);
  }
  return undefined;
}

/** Any directory will do for the file: `probeStoreDirectory` then judges only whether it can be made or written. */
const ANY_DIRECTORY: StoreDirectoryRules = { kind: 'a directory', isStore: () => true };

/**
 * What `probe` answers for a file whose directory is missing: `'absent'` where `open` can make
 * the directory with its parents, refused where it cannot (no right to write the nearest existing
 * directory, a read-only filesystem, a symbolic link to a missing directory on the way).
 */
export async function probeNewDirectory(path: string, directory: string): Promise<StoreProbe> {
  const dangling = await danglingLinkAbove(directory);
  if (dangling !== undefined) return { state: 'refused', reason: dangling };
  const found = await probeStoreDirectory(directory, ANY_DIRECTORY);
  if (found.state === 'refused') return found;
  return { state: 'absent', reason: `${path} does not exist, nor does its directory ${directory}` };
}
