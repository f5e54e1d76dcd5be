import { readFile } from 'node:fs/promises';

/**
 * Whether the lab's parts will have the file descriptors they need. Each part inherits this
 * shell's `ulimit -n`; the gateway needs the most: up to 64 pooled connections to each service
 * (DEFAULT_POOL_OPTIONS in src/services/gateway/upstream.ts, not imported: the orchestrator does not
 * load server modules), plus one per client and what Node itself holds. The paper's 150 clients
 * against 20 services need ~1,650, more than Debian's default soft limit of 1,024.
 */

const POOL_CONNECTIONS_PER_SERVICE = 64;
/** Node's own descriptors (event loop, stdio, the log file, the lab's secrets) and some slack. */
const BASE = 64;
export const DEFAULT_CLIENTS = 150;

export function labFdNeed(services: number, clients = DEFAULT_CLIENTS): number {
  return services * POOL_CONNECTIONS_PER_SERVICE + clients + BASE;
}

/** This process's `ulimit -n` (soft and hard), from /proc/self/limits; undefined where there is none. */
export async function openFilesLimit(
  limitsFile = '/proc/self/limits',
): Promise<{ soft: number; hard: number } | undefined> {
  const text = await readFile(limitsFile, 'utf8').catch(() => undefined);
  const m = text === undefined ? null : /^Max open files\s+(\S+)\s+(\S+)/m.exec(text);
  if (m === null) return undefined;
  const num = (s: string | undefined) => (s === 'unlimited' ? Number.POSITIVE_INFINITY : Number(s));
  return { soft: num(m[1]), hard: num(m[2]) };
}

/** The warning `lab up` prints when the limit is below what the lab needs, with the numbers. */
export async function fdLimitWarning(services: number, limitsFile?: string): Promise<string | undefined> {
  const limit = await openFilesLimit(limitsFile);
  const need = labFdNeed(services);
  if (limit === undefined || limit.soft >= need) return undefined;
  const raise =
    limit.hard >= need
      ? `raise it first: ulimit -n ${need}`
      : `the hard limit is ${limit.hard}: raise it (as root, or in /etc/security/limits.conf) to at least ${need}`;
  return `ulimit -n is ${limit.soft}; a lab of ${services} services under ${DEFAULT_CLIENTS} clients needs about ${need} open files in its gateway (at the limit it refuses new connections): ${raise}`;
}
