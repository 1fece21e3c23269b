import type { FrameworkMode } from '../../http/frameworks.js';
import type { BenchResults } from '../../results.js';
import { okResult, ratio, statusText } from '../format.js';
import { table } from '../table.js';
import { httpModeText } from './http.js';

const ROWS: { framework: string; middleware: string; mode: FrameworkMode; over: string }[] = [
  {
    framework: 'Koa',
    middleware: 'sessile `sessile()`, locked',
    mode: 'koa-sessile',
    over: 'store',
  },
  {
    framework: 'Koa',
    middleware: 'koa-session',
    mode: 'koa-session',
    over: '`toKoaSessionStore(store)`',
  },
  {
    framework: 'Koa',
    middleware: 'koa-session',
    mode: 'koa-session-default',
    over: 'its default: the session in a signed cookie',
  },
  {
    framework: 'Hono',
    middleware: 'sessile `sessile()`, locked',
    mode: 'hono-sessile',
    over: 'store',
  },
  {
    framework: 'Hono',
    middleware: 'hono-sessions',
    mode: 'hono-sessions',
    over: '`toHonoSessionsStore(store)`',
  },
  {
    framework: 'Hono',
    middleware: 'hono-sessions',
    mode: 'hono-sessions-default',
    over: 'its own `MemoryStore`',
  },
];

/** Requests per second through Koa and Hono, sessile's middleware beside each framework's usual one. */
export function httpFrameworksSection(results: BenchResults): string[] {
  const byTarget = results.results['http-frameworks'];
  if (byTarget === undefined) return [];
  const rows: string[][] = [];
  for (const target of results.targets) {
    const outcome = byTarget[target.name];
    if (outcome === undefined || outcome.status === 'skipped') continue;
    const row = okResult(outcome);
    if (row === undefined) {
      rows.push([`\`${target.name}\``, '', '', '', statusText(outcome), '', '']);
      continue;
    }
    for (const { framework, middleware, mode, over } of ROWS) {
      const result = row.modes[mode];
      if (result === undefined) continue;
      const [rate, p99] = httpModeText(result);
      const versus =
        mode === 'koa-sessile'
          ? ratio(row.koaRatio)
          : mode === 'hono-sessile'
            ? ratio(row.honoRatio)
            : '';
      rows.push([
        `\`${target.name}\``,
        framework,
        middleware,
        over === 'store' ? `\`${target.name}\`` : over,
        rate,
        p99,
        versus,
      ]);
    }
  }
  if (rows.length === 0) return [];
  const http = results.profile.http;
  return [
    '### HTTP with Koa and Hono',
    '',
    `A Koa 3 app and a Hono 4 app on @hono/node-server, one process each, with the same route as the Express app: load the session, bump a counter, save. autocannon on 127.0.0.1 with ${http.connections} connections for ${http.durationSec} s, 20 requests per session. sessile's middleware holds each session's lock from load to commit; koa-session and hono-sessions do not lock. The ratio sets sessile's middleware against the framework's usual middleware over the same store.`,
    '',
    table(['store', 'framework', 'middleware', 'over', 'req/s', 'p99', 'sessile / usual'], rows),
    '',
  ];
}
