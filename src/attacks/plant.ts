import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { callService } from '../client/call.js';
import { login } from '../client/login.js';
import type { Session } from '../client/session.js';
import { measuredByRuntime } from '../defences/attestation.js';
import { isAttested } from '../defences/attestation-table.js';
import { TrustedMsError } from '../errors.js';
import type { PartState } from '../kernel/lab-state.js';
import { listServices, verifyServices } from '../lab/attest.js';
import { homeOfLab, restartService } from '../lab/restart.js';
import { packageRoot } from '../paths.js';
import { sinkUrlForParts } from './sink.js';
import type { Attempt, ScenarioContext } from './types.js';

/**
 * How the malicious-service scenarios plant the attacker's code (variants of the sample kit in
 * `src/attacks/payloads/`, bundled into `dist/lab/tampered/`) and take it out again, and the victim's
 * own requests that set the trap off.
 */

/** `attacker.json`, written next to the planted code: where the implant sends what it steals. */
export interface AttackerConfig {
  sink: string;
  /** lateral theft: what the compromised service reads behind its callers' backs */
  target?: { service: string; url: string; path: string };
  /** relayed ticket: the writes the compromised service makes with each ticket it is handed */
  relay?: { service: string; url: string; path: string; body: string }[];
  /** impersonation: what the rogue answers with, and its certificate (files next to it, 0600) */
  rogue?: {
    database: string;
    forged: Record<string, unknown>;
    tls?: { certFile: string; keyFile: string };
    lifetimeSeconds?: number;
  };
}

export type Variant = 'exfil' | 'lying' | 'lateral' | 'relay' | 'rogue';

export function variantBundle(variant: Variant): string {
  return join(packageRoot(), 'dist', 'lab', 'tampered', `${variant}-service.mjs`);
}

export function servicePart(ctx: ScenarioContext, name: string): PartState {
  const part = ctx.lab.parts.find((p) => p.kind === 'service' && p.name === name);
  if (part?.appDir === undefined) {
    throw new TrustedMsError('SERVICE_NOT_FOUND', `the lab has no ${name} service to attack`, {
      actions: ['bring the lab up with more services: --services 3 or more'],
    });
  }
  return part;
}

interface Planted {
  service: string;
  /** the code folder's own entry, as it was */
  original?: Buffer;
  /** a compromised process runs from here instead of the code folder */
  tmpDir?: string;
}

/**
 * Replaces a service's code in its folder with a tampered variant and restarts it (what a
 * deployment of the changed code does). Noted in scratch first, so revert undoes even half of it.
 */
export async function plantInCodeFolder(
  ctx: ScenarioContext,
  service: string,
  variant: Variant,
): Promise<void> {
  const appDir = servicePart(ctx, service).appDir as string;
  const entry = join(appDir, 'service.mjs');
  const planted: Planted = { service, original: await readFile(entry) };
  ctx.scratch.planted = planted;
  await writeFile(join(appDir, 'attacker.json'), attackerJson({ sink: sinkUrlForParts(ctx.lab) }));
  await copyFile(variantBundle(variant), entry);
  await restartService(ctx.lab, service);
}

/**
 * Runs a compromised variant in place of a service's process, its code folder untouched: the
 * compromise of a running service (an exploited bug), which measuring the code cannot see.
 */
export async function compromiseProcess(
  ctx: ScenarioContext,
  service: string,
  variant: Variant,
  attacker: AttackerConfig | ((dir: string) => Promise<AttackerConfig>),
): Promise<void> {
  servicePart(ctx, service);
  const tmpDir = await mkdtemp(join(tmpdir(), 'tms-implant-'));
  const planted: Planted = { service, tmpDir };
  ctx.scratch.planted = planted;
  const entry = join(tmpDir, 'service.mjs');
  await copyFile(variantBundle(variant), entry);
  const config = typeof attacker === 'function' ? await attacker(tmpDir) : attacker;
  await writeFile(join(tmpDir, 'attacker.json'), attackerJson(config));
  // A rogue cannot pass the lab's health check in trusted (the check trusts the lab CA only): its
  // own "listening" line says it is up.
  await restartService(ctx.lab, service, { entry, waitForLog: variant === 'rogue' });
}

/** Puts the service's own code back, restarts it, and (trusted) sees it attested again. */
export async function undoPlant(ctx: ScenarioContext): Promise<void> {
  const planted = ctx.scratch.planted as Planted | undefined;
  if (planted === undefined) return;
  const appDir = servicePart(ctx, planted.service).appDir as string;
  if (planted.original) {
    await writeFile(join(appDir, 'service.mjs'), planted.original);
    await rm(join(appDir, 'attacker.json'), { force: true });
  }
  await restartService(ctx.lab, planted.service);
  if (planted.tmpDir) await rm(planted.tmpDir, { recursive: true, force: true });
  await ensureAttested(ctx, planted.service);
  ctx.scratch.planted = undefined;
}

/**
 * Trusted: the service is attested again before the next scenario runs. A supervisor round that
 * measured the tampered code just before the revert may report after it; one more measurement
 * settles it.
 */
export async function ensureAttested(ctx: ScenarioContext, service: string): Promise<void> {
  if (!measuredByRuntime(ctx.defences.attestation)) return;
  const home = homeOfLab(ctx.lab);
  for (let i = 0; i < 3; i++) {
    const state = (await listServices(home)).find((s) => s.name === service)?.state;
    if (isAttested(state)) return;
    await new Promise((r) => setTimeout(r, 300));
    await verifyServices(home, [service]);
  }
  throw new TrustedMsError('ATTESTATION_MISMATCH', `${service} is not attested again after the revert`);
}

function attackerJson(a: AttackerConfig): string {
  return `${JSON.stringify(a, null, 2)}\n`;
}

/** The victim's session, logged in once per scenario. */
export async function victimSession(ctx: ScenarioContext): Promise<Session> {
  const cached = ctx.scratch.victimSession as Session | undefined;
  if (cached) return cached;
  const { session } = await login(ctx.lab, ctx.victim.name, ctx.victim.password, ctx.victim.privateKey);
  ctx.scratch.victimSession = session;
  return session;
}

/**
 * One request of the victim's own (the trigger, not the attack): recorded with what came back,
 * never as data the attacker got.
 */
export async function victimCall(
  ctx: ScenarioContext,
  service: string,
  path: string,
  action: string,
): Promise<{ attempt: Attempt; body: unknown }> {
  const session = await victimSession(ctx);
  const res = await callService(session, { gatewayUrl: ctx.lab.gatewayUrl, service, path });
  const code = (res.body as { code?: unknown } | null)?.code;
  const attempt: Attempt = {
    action,
    target: `GET ${ctx.lab.gatewayUrl}/svc/${service}${path}`,
    status: res.status,
    ...(typeof code === 'string' ? { code } : {}),
    gotData: false,
    note: "the victim's own request",
  };
  ctx.evidence.attempts.push(attempt);
  return { attempt, body: res.body };
}
