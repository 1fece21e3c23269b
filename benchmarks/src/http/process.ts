/** Runs the HTTP app (`server.ts`) as a child process, for the workloads that load it. */
import { type ChildProcess, fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type OpenTarget, type Target, Unavailable } from '../adapter.js';
import type { WorkloadContext } from '../workloads/context.js';
import type { ServerConfig } from './server.js';

/** The compiled server, also when the harness itself runs from TypeScript sources (tests). */
function serverScript(): string {
  const sibling = fileURLToPath(new URL('./server.js', import.meta.url));
  if (sibling.endsWith('.js') && existsSync(sibling) && sibling.includes('/dist/')) return sibling;
  return fileURLToPath(new URL('../../dist/http/server.js', import.meta.url));
}

/** Forks the server and resolves with its port once every worker listens. */
async function startServer(
  config: ServerConfig,
  signal: AbortSignal,
): Promise<{ child: ChildProcess; port: number }> {
  const script = serverScript();
  if (!existsSync(script)) throw new Error(`${script} is missing: build the benchmarks first`);
  const child = fork(script, [JSON.stringify(config)], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-2000);
  });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      child.on('message', (message: { type: string; port?: number; reason?: string }) => {
        if (message.type === 'ready') resolve(message.port as number);
        if (message.type === 'unavailable')
          reject(new Unavailable(message.reason ?? 'unavailable'));
      });
      child.on('exit', (code) =>
        reject(
          new Error(`server exited with code ${code}: ${stderr.trim().split('\n').pop() ?? ''}`),
        ),
      );
    });
    return { child, port };
  } catch (error) {
    stopServer(child);
    throw error;
  }
}

function stopServer(child: ChildProcess): void {
  if (child.connected) child.disconnect();
  setTimeout(() => child.kill('SIGKILL'), 2000).unref();
}

/**
 * Runs `work` against the app serving `target` (the context's, unless another is given) through
 * `mode`, in as many worker processes as the store may be shared by; always stops the app and
 * gives back its directory. Rejects with `Unavailable` when the target or the middleware cannot
 * run here.
 */
export async function withServer<T>(
  context: WorkloadContext,
  mode: ServerConfig['mode'],
  work: (server: { port: number; workers: number }) => Promise<T>,
  target: Target = context.target,
): Promise<T> {
  const http = target.http;
  if (http === undefined) throw new Unavailable('no HTTP setup');
  const workers = http.sharedAcrossProcesses ? context.profile.http.workers : 1;
  const dir = await context.dirs.make(`${target.name}-http`);
  // Opening the target once here creates its schema before two workers race to do it.
  let prepared: OpenTarget | undefined;
  let server: { child: ChildProcess; port: number } | undefined;
  try {
    if (http.sharedAcrossProcesses) prepared = await target.open(dir);
    server = await startServer({ target: target.name, mode, dir, workers }, context.signal);
    return await work({ port: server.port, workers });
  } finally {
    if (server !== undefined) stopServer(server.child);
    await prepared?.close().catch(() => {});
    await context.dirs.remove(dir);
  }
}
