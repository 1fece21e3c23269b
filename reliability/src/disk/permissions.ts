import { type ChildProcess, fork } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CheckOutcome } from '../results.js';
import type { StoreSpec } from '../stores.js';
import { judge } from './hostile.js';
import type { PermissionsReply, PermissionsRequest, PermissionsTask } from './permissions-child.js';

const CHILD = fileURLToPath(new URL('./permissions-child.js', import.meta.url));
/** `nobody` and `nogroup` on Debian and most Linux systems. */
const NOBODY = 65534;
/** Nine calls, each of which counts as a hang after 15 s. */
const BATTERY_MS = 9 * 15_000 + 10_000;
/** From the parent's stop to the child's report; a lane's call that never settles ends here. */
const STOP_MS = 60_000;
/** Traffic between a mode change and the battery that follows it. */
const TRAFFIC_MS = 300;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Every directory under `dir` (itself first), with its mode, so the modes can be put back. */
async function directoryModes(dir: string): Promise<Map<string, number>> {
  const modes = new Map<string, number>([[dir, (await stat(dir)).mode & 0o7777]]);
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isDirectory()) continue;
    const path = join(entry.parentPath, entry.name);
    const mode = await stat(path).then(
      (stats) => stats.mode & 0o7777,
      () => undefined,
    );
    if (mode !== undefined) modes.set(path, mode);
  }
  return modes;
}

/** The child's replies in order, each awaited with a time limit. */
function replies(child: ChildProcess) {
  const queue: PermissionsReply[] = [];
  let wake = () => {};
  let exited: string | undefined;
  child.on('message', (reply: PermissionsReply) => {
    queue.push(reply);
    wake();
  });
  child.on('exit', (code, signal) => {
    exited = `the child exited (code ${code}, signal ${signal})`;
    wake();
  });
  return async <T extends PermissionsReply['type']>(
    type: T,
    withinMs: number,
  ): Promise<Extract<PermissionsReply, { type: T }>> => {
    const deadline = Date.now() + withinMs;
    for (;;) {
      const index = queue.findIndex((reply) => reply.type === type);
      if (index >= 0) return queue.splice(index, 1)[0] as Extract<PermissionsReply, { type: T }>;
      if (exited !== undefined) throw new Error(`${exited} before its '${type}'`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no '${type}' from the child within ${withinMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  };
}

/**
 * The store's directories lose their permissions under a store that an unprivileged process
 * writes to (0o500 on every directory, then 0o000 on the top one), and get them back: every call
 * settles with a SessionError (an ERR_STORE_IO names the path) or a result, no acknowledged write
 * is lost, and writes work again on the same instance.
 */
export async function permissionsMidRun(spec: StoreSpec): Promise<CheckOutcome> {
  const outcome: CheckOutcome = {
    name: `${spec.name}: permissions revoked mid-run`,
    cases: 0,
    failures: [],
    notes: [],
  };
  const root = await mkdtemp(join(tmpdir(), 'sessile-permissions-'));
  const dir = join(root, 'store');
  const asRoot = process.getuid?.() === 0;
  let child: ChildProcess | undefined;
  let modes = new Map<string, number>();
  try {
    await chmod(root, 0o755);
    await mkdir(dir, { mode: 0o700 });
    if (asRoot) await chown(dir, NOBODY, NOBODY);
    const task: PermissionsTask = { store: spec.name, dir, root };
    child = fork(CHILD, [JSON.stringify(task)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      execArgv: [],
      ...(asRoot ? { uid: NOBODY, gid: NOBODY } : {}),
    });
    const next = replies(child);
    const request = (message: PermissionsRequest) => child?.send(message);
    const runBattery = async (tag: string) => {
      request({ type: 'battery', tag });
      return new Map((await next('outcomes', BATTERY_MS)).outcomes);
    };
    await next('ready', 30_000);
    outcome.notes?.push(`the store runs as uid ${asRoot ? NOBODY : process.getuid?.()}`);
    await sleep(TRAFFIC_MS);
    modes = await directoryModes(dir);
    for (const path of modes.keys()) await chmod(path, 0o500);
    await sleep(TRAFFIC_MS);
    judge(outcome, 'directories 0o500', await runBattery('dirs0500'));
    await chmod(dir, 0o000);
    await sleep(TRAFFIC_MS);
    judge(outcome, 'directory 0o000', await runBattery('dir0000'));
    for (const [path, mode] of modes) await chmod(path, mode);
    await sleep(TRAFFIC_MS);
    let restored = await runBattery('restored');
    // A store may need one failed call to notice that it can write again.
    if ([...restored.values()].some((result) => result !== 'ok'))
      restored = await runBattery('restored2');
    judge(outcome, 'restored', restored);
    for (const [name, result] of restored) {
      if (result !== 'ok') outcome.failures.push(`restored: ${name} still gave ${result}`);
    }
    request({ type: 'stop' });
    const done = await next('done', STOP_MS);
    outcome.cases += done.operations;
    const codes = done.rejected.map(([code, n]) => `${n} × ${code}`).join(', ') || 'none';
    outcome.notes?.push(
      `traffic: ${done.acknowledged} of ${done.operations} writes acknowledged; rejected: ${codes}`,
    );
    for (const [code] of done.rejected) {
      if (code.startsWith('not a SessionError'))
        outcome.failures.push(`traffic: a write rejected with ${code}`);
    }
    outcome.failures.push(...done.unexplained);
    if (done.closed !== 'ok') outcome.failures.push(`close gave ${done.closed}`);
  } catch (error) {
    outcome.failures.push(`unexpected: ${String(error)}`);
  } finally {
    for (const [path, mode] of modes) await chmod(path, mode).catch(() => {});
    if (child !== undefined && child.exitCode === null && child.signalCode === null)
      child.kill('SIGKILL');
    await spec.cleanup?.(dir).catch(() => {});
    await rm(root, { recursive: true, force: true });
  }
  return outcome;
}
