import { randomBytes } from 'node:crypto';
import { callService } from '../../client/call.js';
import { restartService } from '../../lab/restart.js';
import { codeOf } from '../http.js';
import {
  compromiseProcess,
  ensureAttested,
  servicePart,
  undoPlant,
  victimCall,
  victimSession,
} from '../plant.js';
import { readSink, sinkMark, sinkUrlForParts } from '../sink.js';
import type { Attempt, Scenario, ScenarioContext } from '../types.js';
import { judgeByData } from '../types.js';

/** The compromised service: the victim's own request reaches it, and it calls accounts in the topology. */
const COMPROMISED = 'customers';

/**
 * Where it writes with the ticket it was handed, neither on the victim's call path (gateway →
 * customers): accounts, a peer customers calls in the topology (for reads only), and catalog, which
 * it never calls. Both are in every lab of 3 services or more.
 */
const PEERS = [
  { service: 'accounts', database: 'accounts', edge: 'a peer it calls in the topology' },
  { service: 'catalog', database: 'catalog', edge: 'a service it never calls' },
] as const;

/**
 * The peers this lab has: accounts always (a lab of 2 services is customers and accounts), catalog
 * from 3 services on. `attack simulate --all --services 2` ran every other scenario and failed here.
 */
function peersIn(ctx: ScenarioContext): (typeof PEERS)[number][] {
  const peers = PEERS.filter((p) => ctx.lab.parts.some((x) => x.kind === 'service' && x.name === p.service));
  // None at all: the error that says how many services the scenario needs.
  if (peers.length === 0) servicePart(ctx, PEERS[0].service);
  return peers;
}

interface Scratch {
  mark?: number;
  /** peer → the id of the record the implant writes there */
  ids?: Record<string, string>;
  /** peers whose database may hold the attacker's record (revert restarts them) */
  touched?: string[];
}

/**
 * A service that calls a peer on a user's behalf holds the user's ticket, and (issue 13, item 6)
 * inside the mesh that ticket was good at any service for anything the user may do. A compromised
 * service spends it on writes at peers the user's request never went to.
 */
export const relayedTicket: Scenario = {
  id: 'identity.relayed-ticket',
  title: "A compromised service spends a user's ticket on writes off the call path",
  paperAttack: 5,
  technique: 'T1550',
  description:
    "The customers service's process is compromised (it runs src/attacks/payloads/relay-service.ts; its code folder is untouched, so measuring the code cannot see it). The victim reads customers' own database through the gateway: the call path is gateway → customers, and customers calls nobody for it. The implant takes the credentials of that request (the gateway's identity headers in none, the victim's ticket in paper and trusted) and writes a record with them, straight at two services past the gateway: accounts, which customers calls in the topology but only to read, and catalog, which customers never calls. In none and paper a service believes whoever brings the credentials. In trusted accounts knows its caller by its certificate and allows a caller only the requests its edge of the topology allows (lab/topology.json peerCalls: reads), so the write is refused (403 PEER_CALL_NOT_ALLOWED); catalog refuses a caller that is not one of its callers (403 PEER_CERTIFICATE_INVALID). Revert restarts customers with its own code and restarts any service that may have taken the write.",
  evidence:
    "Each write's answer as the peer gave it to the implant (relayed through the attacker's sink), and the victim reading each record back through the gateway: succeeded when a write was accepted (2xx) or the record is there to read.",
  expected: { none: 'succeeded', paper: 'succeeded', trusted: 'blocked' },

  async setup(ctx) {
    const scratch = ctx.scratch as Scratch;
    scratch.mark = await sinkMark(ctx.lab);
    const ids = Object.fromEntries(
      peersIn(ctx).map((p) => [p.service, `tms-relay-${randomBytes(4).toString('hex')}`]),
    );
    scratch.ids = ids;
    await compromiseProcess(ctx, COMPROMISED, 'relay', {
      sink: sinkUrlForParts(ctx.lab),
      relay: peersIn(ctx).map((p) => ({
        service: p.service,
        url: servicePart(ctx, p.service).url,
        path: `/db/${p.database}/records/${ids[p.service]}`,
        body: JSON.stringify({ record: { owner: 'attacker', note: 'written with a relayed ticket' } }),
      })),
    });
  },

  async detonate(ctx) {
    const scratch = ctx.scratch as Scratch;
    const ids = scratch.ids ?? {};
    // Every peer may have taken a write until its answer says otherwise.
    scratch.touched = peersIn(ctx).map((p) => p.service);
    await victimCall(
      ctx,
      COMPROMISED,
      `/db/${COMPROMISED}/records`,
      "the victim reads customers' own database through the gateway (its ticket reaches customers)",
    );
    const { records } = await readSink(ctx.lab, scratch.mark ?? 0, ctx.timeoutMs);
    const touched: string[] = [];
    for (const p of peersIn(ctx)) {
      const id = ids[p.service] as string;
      const write = writeAttempt(ctx, p, id, records);
      const readBack = await readBackAttempt(ctx, p.service, p.database, id);
      if (write.gotData || readBack.gotData || write.status === undefined || write.status < 400) {
        touched.push(p.service);
      }
    }
    scratch.touched = touched;
  },

  judge: judgeByData,

  async revert(ctx) {
    const scratch = ctx.scratch as Scratch;
    await undoPlant(ctx);
    // The peers' databases live in their memory: a restart puts them back as deployed.
    for (const service of scratch.touched ?? []) {
      await restartService(ctx.lab, service);
      await ensureAttested(ctx, service);
    }
    scratch.touched = undefined;
  },
};

/** The implant's write at `peer` as the peer answered it (what the implant sent to the sink). */
function writeAttempt(
  ctx: ScenarioContext,
  peer: (typeof PEERS)[number],
  id: string,
  records: { path: string; body: string }[],
): Attempt {
  const path = `/db/${peer.database}/records/${id}`;
  const report = records
    .map((r) => parseReport(r.body))
    .find((r) => r?.to === peer.service && r.path === path);
  const code = report?.body === undefined ? undefined : codeOf(report.body);
  const ok = report?.status !== undefined && report.status >= 200 && report.status < 300;
  const attempt: Attempt = {
    action: `customers writes into ${peer.service} (${peer.edge}) with the victim's ticket`,
    target: `PUT ${servicePart(ctx, peer.service).url}${path}`,
    ...(report?.status === undefined ? {} : { status: report.status }),
    ...(code === undefined ? {} : { code }),
    gotData: ok && (report?.body ?? '').includes(`"id":"${id}"`),
    note:
      report === undefined
        ? 'the implant reported no answer'
        : report.error !== undefined
          ? `no answer: ${report.error.slice(0, 120)}`
          : "the peer's answer, as the implant relayed it to the sink",
  };
  ctx.evidence.attempts.push(attempt);
  return attempt;
}

/** The victim reads the record back through the gateway: it is there only if the write landed. */
async function readBackAttempt(
  ctx: ScenarioContext,
  service: string,
  database: string,
  id: string,
): Promise<Attempt> {
  const path = `/db/${database}/records/${id}`;
  const res = await callService(await victimSession(ctx), { gatewayUrl: ctx.lab.gatewayUrl, service, path });
  const code = (res.body as { code?: unknown } | null)?.code;
  const attempt: Attempt = {
    action: `the victim reads back the record the implant wrote into ${service}`,
    target: `GET ${ctx.lab.gatewayUrl}/svc/${service}${path}`,
    status: res.status,
    ...(typeof code === 'string' ? { code } : {}),
    gotData: res.status === 200 && JSON.stringify(res.body).includes(`"id":"${id}"`),
    note: "the victim's own request: the attacker's record is there only when the write landed",
  };
  ctx.evidence.attempts.push(attempt);
  return attempt;
}

interface WriteReport {
  to?: string;
  path?: string;
  status?: number;
  body?: string;
  error?: string;
}

function parseReport(body: string): WriteReport | undefined {
  try {
    const r = JSON.parse(body) as WriteReport | null;
    return typeof r === 'object' && r !== null ? r : undefined;
  } catch {
    return undefined;
  }
}
