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

/** Removing or stopping something already gone (404), already stopped (304) or being removed (409) is success. */
export async function idempotent(run: () => Promise<unknown>): Promise<void> {
  try {
    await run();
  } catch (err) {
    const status = engineStatus(err);
    if (status === 304 || status === 404 || status === 409) return;
    throw err;
  }
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
