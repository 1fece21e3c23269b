import { SessionError } from '@sessile/core';
import { FORMAT_VERSION, OLDEST_READ_VERSION } from './format.js';

/** The file's structure is inconsistent: a header, page or free list does not read back as written. */
export function damaged(path: string, what: string): SessionError {
  return new SessionError('ERR_STORE_IO', `The dbm file ${path} is damaged: ${what}`);
}

export function corruptRecord(): SessionError {
  return new SessionError(
    'ERR_CORRUPT_RECORD',
    'The stored record for this session id cannot be decoded',
  );
}

/** The file exists but was not written by @sessile/dbm. */
export function foreignFile(path: string): SessionError {
  return new SessionError(
    'ERR_STORE_IO',
    `Cannot open ${path} as a dbm file: it is not a sessile dbm file (it was left unmodified)`,
  );
}

/** A sessile dbm file whose on-disk format this release does not read. */
export function unsupportedVersion(path: string, version: number, checked = true): SessionError {
  const advice =
    version > FORMAT_VERSION
      ? `a newer @sessile/dbm wrote it; upgrade to open it${checked ? '' : ', unless its header is damaged'}`
      : 'no release of @sessile/dbm writes it';
  return new SessionError(
    'ERR_UNSUPPORTED',
    `The dbm file ${path} has format version ${version}, and this @sessile/dbm reads format version ${FORMAT_VERSION} and the earlier version ${OLDEST_READ_VERSION} (${advice}); it was left unmodified`,
  );
}

/** The path cannot hold a dbm file, or the file system refused to open or create it. */
export function cannotOpen(path: string, reason: string, cause?: unknown): SessionError {
  return new SessionError('ERR_STORE_IO', `Cannot open ${path} as a dbm file: ${reason}`, {
    cause,
  });
}
