import { randomBytes } from 'node:crypto';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { isSessionError, type SessionErrorCode } from '@sessile/core';
import pg from 'pg';
import { afterAll, afterEach, beforeAll } from 'vitest';

export const HOUR_MS = 3_600_000;

/** The real server the tests run on; override with SESSILE_PG_URL. */
export const CONNECTION_STRING =
  process.env.SESSILE_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A schema name no other run uses; the run drops it in its afterAll. */
export function runSchema(label: string): string {
  return `sessile_${label}_${process.pid}_${randomBytes(4).toString('hex')}`;
}

/** Runs one statement on a connection of its own, outside any store. */
export async function admin<R extends pg.QueryResultRow = pg.QueryResultRow>(
  text: string,
  values: unknown[] = [],
): Promise<pg.QueryResult<R>> {
  const client = new pg.Client({ connectionString: CONNECTION_STRING });
  await client.connect();
  try {
    return await client.query<R>(text, values);
  } finally {
    await client.end();
  }
}

export async function dropSchema(schema: string): Promise<void> {
  await admin(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
}

/**
 * A test file's own schema, created before its tests and dropped after them, with clean-ups that
 * run after each test (last registered, first run) and table names unique within the file.
 */
export function useTestSchema(label: string): {
  schema: string;
  cleanups: Array<() => unknown>;
  newTable(prefix?: string): string;
} {
  const schema = runSchema(label);
  const cleanups: Array<() => unknown> = [];
  beforeAll(() => admin(`CREATE SCHEMA "${schema}"`));
  afterAll(() => dropSchema(schema));
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  let tables = 0;
  return { schema, cleanups, newTable: (prefix = 't') => `${prefix}${++tables}` };
}

/** A valid session id, unique to this call. */
export function idOf(label: string): string {
  return `${label}-${randomBytes(12).toString('hex')}`;
}

export function record(text: string, expiresAt = Date.now() + HOUR_MS) {
  return { data: Buffer.from(text), expiresAt };
}

export function textOf(data: Uint8Array | undefined): string | undefined {
  return data === undefined ? undefined : Buffer.from(data).toString();
}

export async function codeOf(promise: Promise<unknown>): Promise<SessionErrorCode | 'resolved'> {
  try {
    await promise;
    return 'resolved';
  } catch (error) {
    if (isSessionError(error)) return error.code;
    throw error;
  }
}

/** A pool of `max` connections that counts the statements its connections send. */
export function countStatements(max: number): { pool: pg.Pool; statements: () => number } {
  const pool = new pg.Pool({ connectionString: CONNECTION_STRING, max });
  pool.on('error', () => {});
  let statements = 0;
  pool.on('connect', (client) => {
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    client.query = ((...args: unknown[]) => {
      statements++;
      return query(...args);
    }) as typeof client.query;
  });
  return { pool, statements: () => statements };
}

/**
 * A front door to the test server that asks each connection for a cleartext password before
 * handing it to the server (which trusts it): a server with password authentication, on a
 * machine whose own server trusts everyone. Counts the connections it let in and turned away.
 */
export async function passwordGate(password: string): Promise<{
  port: number;
  accepted: () => number;
  refused: () => number;
  close: () => Promise<void>;
}> {
  const upstreamUrl = new URL(CONNECTION_STRING);
  let accepted = 0;
  let refused = 0;
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    let buffered = Buffer.alloc(0);
    let startup: Buffer | undefined;
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        if (startup === undefined) {
          if (buffered.length < 4 || buffered.length < buffered.readInt32BE(0)) return;
          const message = buffered.subarray(0, buffered.readInt32BE(0));
          buffered = buffered.subarray(message.length);
          // An SSLRequest: no TLS here.
          if (message.length === 8 && message.readInt32BE(4) === 80877103) {
            socket.write('N');
            continue;
          }
          startup = message;
          socket.write(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3])); // AuthenticationCleartextPassword
          continue;
        }
        if (buffered.length < 5 || buffered.length < buffered.readInt32BE(1) + 1) return;
        const length = buffered.readInt32BE(1);
        const given = buffered.subarray(5, length).toString().replace(/\0$/, '');
        const rest = buffered.subarray(length + 1);
        socket.off('data', onData);
        if (given !== password) {
          refused++;
          socket.destroy();
          return;
        }
        accepted++;
        const hello = startup;
        const upstream = connect(Number(upstreamUrl.port || 5432), upstreamUrl.hostname, () => {
          upstream.write(hello);
          if (rest.length > 0) upstream.write(rest);
          socket.pipe(upstream);
          upstream.pipe(socket);
        });
        sockets.add(upstream);
        upstream.on('error', () => socket.destroy());
        upstream.on('close', () => socket.destroy());
        socket.on('close', () => upstream.destroy());
        return;
      }
    };
    socket.on('data', onData);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    accepted: () => accepted,
    refused: () => refused,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * A relay to the test server that fails as a network does. From `silence()` on it forwards
 * nothing and closes nothing (a partition, a black-holed address); from `swallowReplies()` on it
 * forwards what clients send but none of the answers; `cut()` drops every connection at once, as
 * a brief network drop does, and relays new ones normally. `url()` is the server's URL through it.
 */
export async function faultyRelay(): Promise<{
  url: () => URL;
  silence: () => void;
  swallowReplies: () => void;
  cut: () => void;
  close: () => Promise<void>;
}> {
  const upstreamUrl = new URL(CONNECTION_STRING);
  let silent = false;
  let swallowing = false;
  const sockets = new Set<Socket>();
  // Half-open allowed: a socket whose client said goodbye answers only as the relay forwards.
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    const upstream = connect(Number(upstreamUrl.port || 5432), upstreamUrl.hostname);
    for (const end of [socket, upstream]) {
      sockets.add(end);
      end.on('error', () => {});
      end.on('close', () => sockets.delete(end));
    }
    socket.on('data', (chunk) => {
      if (!silent) upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (!silent && !swallowing) socket.write(chunk);
    });
    socket.on('end', () => {
      if (!silent) upstream.end();
    });
    upstream.on('end', () => {
      if (!silent) socket.end();
    });
    socket.on('close', () => {
      if (!silent) upstream.destroy();
    });
    upstream.on('close', () => {
      if (!silent) socket.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = new URL(CONNECTION_STRING);
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as AddressInfo).port);
  return {
    url: () => new URL(url),
    silence: () => {
      silent = true;
    },
    swallowReplies: () => {
      swallowing = true;
    },
    cut: () => {
      for (const socket of sockets) socket.destroy();
      swallowing = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * The `<table>_claim_read` function of schema version 5, as that release made it (`git show
 * 304e3ae:packages/postgres/src/schema.ts`): its claim refuses a lease its own token holds once
 * another claim marked that lease waited for.
 */
export function versionFiveClaimRead(schema: string, table: string): string {
  const ended = `(held.expires_at <= now_ms OR held.expires_at >= 'Infinity')`;
  return `CREATE OR REPLACE FUNCTION "${schema}"."${table}_claim_read"(
      lease_keys text[], lease_tokens text[], lease_ends double precision[],
      now_ms double precision, session_ids text[])
    RETURNS TABLE (token text, data bytea, "expiresAt" double precision, owner bytea)
    LANGUAGE plpgsql VOLATILE AS $body$
    #variable_conflict use_column
    DECLARE taken text[];
    BEGIN
      WITH claimed AS (
        INSERT INTO "${schema}"."${table}_locks" AS held (id, token, expires_at)
          SELECT q.id, q.token, q.expires_at
          FROM unnest(lease_keys, lease_tokens, lease_ends) AS q(id, token, expires_at)
          ORDER BY q.id COLLATE "C"
          ON CONFLICT (id) DO UPDATE SET
      token = CASE WHEN ${ended} THEN excluded.token ELSE held.token END,
      expires_at = CASE WHEN ${ended} THEN excluded.expires_at ELSE held.expires_at END,
      waited = held.waited OR NOT ${ended}
    WHERE ${ended} OR NOT held.waited
          RETURNING held.token)
      SELECT array_agg(claimed.token) INTO taken FROM claimed;
      IF taken IS NULL THEN
        RETURN;
      END IF;
      RETURN QUERY SELECT q.token, stored.data, stored.expires_at, stored.owner
        FROM unnest(lease_tokens, session_ids) AS q(token, id)
        LEFT JOIN "${schema}"."${table}" AS stored
          ON stored.id = q.id AND stored.expires_at > now_ms
        WHERE q.token = ANY (taken);
    END
    $body$`;
}

/** Puts a store's table back at schema version 5, with that version's claim-and-read function. */
export async function downgradeToVersionFive(schema: string, table: string): Promise<void> {
  await admin(versionFiveClaimRead(schema, table));
  await admin(`UPDATE "${schema}".sessile_versions SET version = 5 WHERE table_name = $1`, [table]);
}

/**
 * One call of the store's claim-and-read function, as its locks send it, claiming `id` for
 * `token` until a minute from now: the token and the session's data of each claim taken.
 */
export async function claimRead(
  schema: string,
  table: string,
  id: string,
  token: string,
): Promise<Array<{ token: string; data: string | undefined }>> {
  const { rows } = await admin<{ token: string; data: Buffer | null }>(
    `SELECT token, data FROM "${schema}"."${table}_claim_read"($1, $2, $3, $4, $5)`,
    [[id], [token], [Date.now() + 60_000], Date.now(), [id]],
  );
  return rows.map((row) => ({ token: row.token, data: row.data?.toString() }));
}
