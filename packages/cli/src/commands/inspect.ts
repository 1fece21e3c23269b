import { isSessionError, isSessionId, type SessionEnvelope } from '@sessile/core';
import { codecFromEnvironment } from '../codec.js';
import { CliError, EXIT, type ExitCode, usageError } from '../exit-codes.js';
import {
  type CommonOptions,
  isoTime,
  printJson,
  printLines,
  RECORD_LIMIT_HINT,
  reportOnStderr,
  toCliError,
  write,
} from '../output.js';
import {
  expiredNotSwept,
  readRecord,
  sizeOnDisk,
  unnamedRecords,
  unreadableReason,
  withStore,
} from '../store-session.js';

/** `sessile stats URL`: counts, size, expiry range and owners of one store. */
export async function stats(url: string, options: CommonOptions): Promise<ExitCode> {
  return withStore(url, { ...options, mustExist: true }, async (store, address) => {
    const now = Date.now();
    // Counted in the pass, not by `count()`, which some stores (SQLite) give corrupt rows in.
    let live = 0;
    let listed = 0;
    let soonest: number | null = null;
    let latest: number | null = null;
    let payloadBytes = 0;
    const skipped = { corrupt: 0, tooLarge: 0 };
    const owners = new Set<string>();
    // The contract has no expiry or owner query, so both come from one streamed pass.
    for await (const id of store.ids()) {
      listed++;
      let record: Awaited<ReturnType<typeof store.get>>;
      try {
        record = await readRecord(store, id);
      } catch (error) {
        const reason = unreadableReason(error);
        if (reason === undefined) throw error;
        skipped[reason]++;
        // Over this run's limit, not damaged: the app, opened with its own limit, serves it.
        if (reason === 'tooLarge') live++;
        continue;
      }
      if (record === undefined) continue;
      live++;
      payloadBytes += record.data.byteLength;
      if (soonest === null || record.expiresAt < soonest) soonest = record.expiresAt;
      if (latest === null || record.expiresAt > latest) latest = record.expiresAt;
      if (record.owner !== undefined) owners.add(record.owner);
    }
    const result = {
      store: address.display,
      live,
      ...skipped,
      unnamed: await unnamedRecords(store, address, listed),
      maxRecordBytes: store.maxRecordBytes,
      payloadBytes,
      sizeOnDiskBytes: address.path === undefined ? null : await sizeOnDisk(address.path),
      expiredNotSwept: await expiredNotSwept(store, address, now),
      soonestExpiry: isoTime(soonest),
      latestExpiry: isoTime(latest),
      owners: owners.size,
      capabilities: store.capabilities,
    };
    if (options.json) await printJson(result);
    else {
      const show = (value: unknown) => (value === null ? 'unknown' : String(value));
      await printLines([
        `store              ${result.store}`,
        `live sessions      ${result.live}`,
        `corrupt records    ${result.corrupt}`,
        `unnamed records    ${result.unnamed === null ? 'unknown (the store cannot tell)' : `${result.unnamed}${result.unnamed === 0 ? '' : ' (counted by the store under keys no session id can have)'}`}`,
        `too large records  ${result.tooLarge}${result.tooLarge === 0 ? '' : ` (over ${result.maxRecordBytes} bytes; ${RECORD_LIMIT_HINT})`}`,
        `payload            ${result.payloadBytes} bytes`,
        `size on disk       ${result.sizeOnDiskBytes === null ? 'unknown' : `${result.sizeOnDiskBytes} bytes`}`,
        `expired, unswept   ${show(result.expiredNotSwept)}`,
        `soonest expiry     ${show(result.soonestExpiry)}`,
        `latest expiry      ${show(result.latestExpiry)}`,
        `owners             ${result.owners} (${result.capabilities.ownerIndex ? 'indexed' : 'no owner index'})`,
      ]);
    }
    const unreadable = skipped.corrupt + skipped.tooLarge + (result.unnamed ?? 0);
    return unreadable > 0 ? EXIT.incomplete : EXIT.ok;
  });
}

/** `sessile ls URL`: every live id, streamed. */
export async function ls(url: string, options: CommonOptions): Promise<ExitCode> {
  return withStore(url, { ...options, mustExist: true }, async (store) => {
    let count = 0;
    if (options.json) await write('{"ids":[');
    try {
      for await (const id of store.ids()) {
        if (options.json) await write(`${count === 0 ? '' : ','}\n  ${JSON.stringify(id)}`);
        else await write(`${id}\n`);
        count++;
      }
    } catch (error) {
      if (!options.json) throw error;
      // The document has begun: it ends with the failure in it, so stdout stays one JSON document.
      const failure = toCliError(error);
      const { code, message, exitCode } = failure;
      await write(
        `${count === 0 ? '' : '\n'}],"count":${count},"ok":false,"error":${JSON.stringify({ code, message, exitCode })}}\n`,
      );
      return reportOnStderr(failure);
    }
    if (options.json) await write(`${count === 0 ? '' : '\n'}],"count":${count}}\n`);
    return EXIT.ok;
  });
}

/** Keeps the shape of session data and hides every value in it. */
export function redact(value: unknown): unknown {
  if (Array.isArray(value)) return `[redacted array(${value.length})]`;
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, redact(inner)]));
  }
  if (typeof value === 'string') return `[redacted string(${value.length})]`;
  if (value === null) return null;
  return `[redacted ${typeof value}]`;
}

export interface ShowOptions extends CommonOptions {
  reveal?: boolean;
}

/** `sessile show URL ID`: one session decoded with the app's codec, values redacted unless `--reveal`. */
export async function show(url: string, id: string, options: ShowOptions): Promise<ExitCode> {
  if (!isSessionId(id)) {
    throw usageError('not a sessile session id: 16 to 128 characters of [A-Za-z0-9_-]');
  }
  const codec = codecFromEnvironment();
  return withStore(url, { ...options, mustExist: true }, async (store) => {
    const record = await store.get(id);
    if (record === undefined) {
      throw new CliError('no live session has that id', EXIT.notFound, 'ERR_NOT_FOUND');
    }
    let envelope: SessionEnvelope;
    try {
      envelope = codec.decode(record.data, id);
    } catch (error) {
      if (isSessionError(error, 'ERR_UNSUPPORTED')) {
        // A newer release's record, not a damaged one: an app that upgraded wrote it.
        throw new CliError(
          `the session was written by a newer version than this sessile reads (${error.message}); upgrade @sessile/cli`,
          EXIT.failure,
          'ERR_UNSUPPORTED',
          { cause: error },
        );
      }
      const hint = codec.name === 'json' ? ' (encrypted? put the keys in SESSILE_AES_KEYS)' : '';
      throw new CliError(
        `the session cannot be decoded with the ${codec.name} codec${hint}`,
        EXIT.failure,
        'ERR_CORRUPT_RECORD',
        { cause: error },
      );
    }
    const result = {
      id,
      codec: codec.name,
      bytes: record.data.byteLength,
      expiresAt: isoTime(record.expiresAt),
      createdAt: isoTime(envelope.createdAt),
      lastAccessedAt: isoTime(envelope.lastAccessedAt),
      data: options.reveal ? envelope.data : redact(envelope.data),
    };
    if (options.json) await printJson(result);
    else {
      await printLines([
        `id                 ${result.id}`,
        `codec              ${result.codec} (${result.bytes} bytes)`,
        `expires            ${result.expiresAt}`,
        `created            ${result.createdAt}`,
        `last accessed      ${result.lastAccessedAt}`,
        `data${options.reveal ? '' : ' (redacted; --reveal shows values)'}`,
        JSON.stringify(result.data, null, 2),
      ]);
    }
    return EXIT.ok;
  });
}
