import type Dockerode from 'dockerode';
import { TrustedMsError } from '../../../errors.js';

/** Labels on every object the lab creates: cleanup finds objects by label, never by name. */
export const LABEL = {
  lab: 'trusted-ms.lab-id',
  part: 'trusted-ms.part',
  posture: 'trusted-ms.posture',
  image: 'trusted-ms.image',
  /** on a node image built from a configured base image: its reference and image id */
  baseImage: 'trusted-ms.base-image',
  baseImageId: 'trusted-ms.base-image-id',
} as const;

const PING_TIMEOUT_MS = 1500;

/**
 * A client of the local Docker engine (DOCKER_HOST or /var/run/docker.sock), or undefined when none
 * answers in time. dockerode is imported here, on demand: it costs ~0.5 s, which commands that
 * never touch Docker should not pay.
 */
export async function connectEngine(): Promise<Dockerode | undefined> {
  // dockerode is CommonJS: its class is the module's default export at run time.
  const mod = (await import('dockerode')) as unknown as { default: typeof Dockerode };
  const docker = new mod.default();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      docker.ping(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('timeout')), PING_TIMEOUT_MS);
      }),
    ]);
    return docker;
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

/** The local engine, or LAB_START_FAILED saying how to get one when none answers. */
export async function requireEngine(): Promise<Dockerode> {
  const docker = await connectEngine();
  if (docker) return docker;
  throw new TrustedMsError(
    'LAB_START_FAILED',
    'no Docker engine answers (DOCKER_HOST or /var/run/docker.sock)',
    {
      actions: ['start dockerd, or use --runtime process'],
    },
  );
}

/** The HTTP status of an Engine API error, if it is one. */
export function engineStatus(err: unknown): number | undefined {
  const status = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

/**
 * Whether a container counts as alive: only while it runs. One in a crash loop shows `restarting`
 * (the engine's back-off between tries) or, once the restart policy gives up, `exited`: neither is
 * serving, so neither is alive.
 */
export function containerAlive(state: { Status?: string; Running?: boolean; Restarting?: boolean }): boolean {
  return state.Status === 'running' && state.Running === true && state.Restarting !== true;
}

/**
 * Stopping something already stopped (304) or gone (404) is success. Not for removals: a 409 there
 * can mean "removal already in progress", which is not "gone" (use removeContainer/removeNetwork).
 */
export async function idempotent(run: () => Promise<unknown>): Promise<void> {
  try {
    await run();
  } catch (err) {
    const status = engineStatus(err);
    if (status === 304 || status === 404 || status === 409) return;
    throw err;
  }
}

/** The engine's own words for a failed call (dockerode puts the JSON body's `message` in `json`). */
export function engineMessage(err: unknown): string {
  const e = err as { json?: { message?: unknown }; message?: unknown } | null;
  const fromBody = e?.json?.message;
  if (typeof fromBody === 'string' && fromBody) return fromBody;
  return String(e?.message ?? err);
}

/** How often and how patiently an engine operation is tried again after a transient answer. */
export interface EngineRetry {
  attempts: number;
  firstDelayMs: number;
  maxDelayMs: number;
  sleep?: (ms: number) => Promise<void>;
}

/** ~12 s in all: longer than the engine needs to finish a removal or an archive under load. */
export const ENGINE_RETRY: EngineRetry = { attempts: 8, firstDelayMs: 200, maxDelayMs: 3000 };

/**
 * Engine answers to a removal that pass when the same call is made again: the root filesystem
 * still held by another operation on the container (an archive read mounts the container's
 * volumes into it: "unlinkat ... directory not empty", "read-only file system", "device or
 * resource busy"), a removal already under way, a container the restart policy is restarting,
 * a network whose endpoints are still being released.
 */
const TRANSIENT =
  /directory not empty|device or resource busy|read-only file system|failed to remove root filesystem|unlinkat|is restarting|already in progress|in progress|has active endpoints|cannot remove a running container|container is running|stop the container before/i;

export function transientRemovalError(err: unknown): boolean {
  const status = engineStatus(err);
  if (status === undefined) return false;
  if (status >= 500) return true;
  return status === 409 && TRANSIENT.test(engineMessage(err));
}

type ContainerHandle = Pick<Dockerode.Container, 'remove' | 'inspect' | 'kill' | 'update' | 'wait'>;

/**
 * Removes a container, and only returns once it is gone (404 is gone already). A transient answer
 * is tried again with back-off; before the next try the container's restart policy is switched off
 * and it is killed and waited for, so that neither it nor the engine's restart manager holds it.
 * After the last try: ENGINE_OPERATION_FAILED, naming the container and the engine's message.
 */
export async function removeContainer(
  docker: { getContainer(id: string): ContainerHandle },
  id: string,
  opts: { name?: string; retry?: EngineRetry } = {},
): Promise<void> {
  const retry = opts.retry ?? ENGINE_RETRY;
  const sleep = retry.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const container = docker.getContainer(id);
  let last: unknown;
  let delay = retry.firstDelayMs;
  for (let attempt = 1; attempt <= retry.attempts; attempt++) {
    try {
      await container.remove({ force: true });
      return;
    } catch (err) {
      if (engineStatus(err) === 404) return;
      if (!transientRemovalError(err)) throw err;
      last = err;
    }
    await quiesce(container);
    await sleep(delay);
    delay = Math.min(delay * 2, retry.maxDelayMs);
  }
  const what = opts.name ? `${opts.name} (${id.slice(0, 12)})` : id.slice(0, 12);
  throw new TrustedMsError(
    'ENGINE_OPERATION_FAILED',
    `the engine would not remove container ${what} after ${retry.attempts} tries: ${engineMessage(last)}`,
    {
      cause: last,
      actions: [
        "see the engine's log (dockerd's output, or journalctl -u docker)",
        `remove it by hand (docker rm -f ${id.slice(0, 12)}), then run trusted-ms lab down`,
      ],
    },
  );
}

/** Best effort between two tries of a removal: no restarts, not running. */
async function quiesce(container: ContainerHandle): Promise<void> {
  const info = await container.inspect().catch(() => undefined);
  if (!info) return;
  if (info.HostConfig?.RestartPolicy?.Name && info.HostConfig.RestartPolicy.Name !== 'no') {
    await container.update({ RestartPolicy: { Name: 'no', MaximumRetryCount: 0 } }).catch(() => undefined);
  }
  if (info.State?.Running || info.State?.Restarting) {
    await container.kill().catch(() => undefined);
    await container.wait({ condition: 'not-running' }).catch(() => undefined);
  }
}

/** Removes a network or volume, trying again while the engine still releases what used it. */
export async function removeWithRetry(
  remove: () => Promise<unknown>,
  what: string,
  retry: EngineRetry = ENGINE_RETRY,
): Promise<void> {
  const sleep = retry.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  let last: unknown;
  let delay = retry.firstDelayMs;
  for (let attempt = 1; attempt <= retry.attempts; attempt++) {
    try {
      await remove();
      return;
    } catch (err) {
      if (engineStatus(err) === 404) return;
      if (!transientRemovalError(err)) throw err;
      last = err;
    }
    await sleep(delay);
    delay = Math.min(delay * 2, retry.maxDelayMs);
  }
  throw new TrustedMsError(
    'ENGINE_OPERATION_FAILED',
    `the engine would not remove ${what} after ${retry.attempts} tries: ${engineMessage(last)}`,
    { cause: last, actions: ["see the engine's log", 'then run trusted-ms lab down again'] },
  );
}

/** A container's log (non-TTY: frames of an 8-byte header + payload) as text. */
export function demuxLog(buf: Buffer): string {
  const out: Buffer[] = [];
  let off = 0;
  while (off + 8 <= buf.length) {
    const type = buf[off];
    const size = buf.readUInt32BE(off + 4);
    if (type === undefined || type > 2 || buf[off + 1] !== 0) return buf.toString('utf8'); // a TTY log: no frames
    out.push(buf.subarray(off + 8, off + 8 + size));
    off += 8 + size;
  }
  return Buffer.concat(out).toString('utf8');
}
