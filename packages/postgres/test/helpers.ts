import { randomBytes } from 'node:crypto';
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
