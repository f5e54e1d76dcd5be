import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Agent, type Dispatcher } from 'undici';
import type { ServicePartConfig } from '../../kernel/part-config.js';
import { restartService } from '../../lab/restart.js';
import { readIdentity } from '../../pki/identity-files.js';
import { clientTlsConnector } from '../../pki/mtls.js';
import { attempt } from '../http.js';
import { ensureAttested, plantInCodeFolder, servicePart, undoPlant, victimSession } from '../plant.js';
import { judgeByData, type Scenario, type ScenarioContext } from '../types.js';

/** The service whose code the attacker changes: it calls accounts in the topology (and is in every lab of 2+). */
const COMPROMISED = 'customers';
/** Its peer, whose data the attacker reads and writes with what the compromised service holds. */
const PEER = { service: 'accounts', database: 'accounts', recordId: 'acc-1' } as const;

interface Scratch {
  /** a record the attack may have written into the peer's database (revert restarts the peer) */
  writtenId?: string;
}

/**
 * A service that failed attestation keeps what it held before: its certificate and key, and the
 * tickets it saw. Issue 13 found that peers checked only a caller's name and quarantine, so that
 * was enough to read and write another service's database.
 */
export const untrustedServiceKeepsCert: Scenario = {
  id: 'identity.untrusted-service-keeps-cert',
  title: 'A service that failed attestation calls a peer with its certificate',
  paperAttack: 5,
  technique: 'T1550',
  description:
    "The attacker changes the customers service's code on disk (src/attacks/payloads/exfil-service.ts) and it is restarted, as a deployment would; in paper and trusted it then fails attestation and the gateway refuses it. The attacker holds what customers holds: a user's ticket that passed through it before, and in trusted its certificate and key from the lab CA. With them it reads accounts' records (a peer customers may call in the topology, with the one read its edge allows) and writes one, straight at accounts, past the gateway. In none there is no identity: whoever reaches a service is believed, so the attacker sends the gateway's identity headers for the victim; in paper the links are plain, so the victim's bearer ticket is all it takes. In trusted accounts refuses a caller the revocation feed names as untrusted (403 PEER_UNTRUSTED) whatever certificate it presents (the write is also outside the edge's calls: 403 PEER_CALL_NOT_ALLOWED), and the watchman renews no identity of an untrusted service, so the certificate also runs out within one lifetime. Revert puts the original code back, restarts customers (attested again) and restarts accounts, dropping anything written.",
  evidence:
    "The status of the read and of the write at accounts with customers' credentials: succeeded when the record comes back or the write is accepted (2xx), blocked when accounts refuses (a TLS refusal, or 403 with a code).",
  expected: { none: 'succeeded', paper: 'succeeded', trusted: 'blocked' },

  async setup(ctx) {
    servicePart(ctx, PEER.service);
    // The ticket customers saw pass through while it was honest.
    await victimSession(ctx);
    // The restart is when the lab sees the change (trusted: measured before the program runs;
    // paper: its own report at start): nothing here waits for the watchman's next round.
    await plantInCodeFolder(ctx, COMPROMISED, 'exfil');
  },

  async detonate(ctx) {
    const scratch = ctx.scratch as Scratch;
    const session = await victimSession(ctx);
    const peer = servicePart(ctx, PEER.service);
    const base = peer.directUrl ?? peer.url;
    const credentials: Record<string, string> =
      ctx.defences.request === 'basic'
        ? {
            'x-tms-user': ctx.victim.name,
            'x-tms-role': 'admin',
            'x-tms-perms': JSON.stringify({ [PEER.database]: ['read', 'query', 'write'] }),
          }
        : { authorization: `Bearer ${session.ticket}` };
    const dispatcher = await asCompromised(ctx);
    const how = ctx.defences.links === 'mtls' ? "with customers' certificate and key" : 'over plain HTTP';
    try {
      await attempt(ctx, {
        // The list: the call customers' edge of the topology allows (peerCalls), so that only
        // attestation stands between the untrusted caller and the data. A read of one record is
        // refused by the edge policy alone (PEER_CALL_NOT_ALLOWED), which hid the attestation check.
        action: `read ${PEER.service}'s ${PEER.database} database ${how}`,
        url: `${base}/db/${PEER.database}/records`,
        headers: credentials,
        dispatcher,
        marker: `"id":"${PEER.recordId}"`,
      });
      const id = `tms-attack-${randomBytes(4).toString('hex')}`;
      scratch.writtenId = id;
      await attempt(ctx, {
        action: `write a record into ${PEER.service}'s ${PEER.database} database ${how}`,
        url: `${base}/db/${PEER.database}/records/${id}`,
        method: 'PUT',
        headers: { ...credentials, 'content-type': 'application/json' },
        body: JSON.stringify({ record: { owner: 'attacker', balance: 1_000_000 } }),
        dispatcher,
        marker: `"id":"${id}"`,
      });
    } finally {
      if (dispatcher !== ctx.client) await dispatcher.close();
    }
  },

  judge: judgeByData,

  async revert(ctx) {
    const scratch = ctx.scratch as Scratch;
    await undoPlant(ctx);
    if (scratch.writtenId !== undefined) {
      // The peer's databases live in its memory: a restart puts them back as deployed.
      await restartService(ctx.lab, PEER.service);
      await ensureAttested(ctx, PEER.service);
      scratch.writtenId = undefined;
    }
  },
};

/**
 * The attacker's client as the compromised service: with mTLS, customers' own identity (read from
 * where customers reads it) towards accounts; otherwise the attacker's own client.
 */
async function asCompromised(ctx: ScenarioContext): Promise<Dispatcher> {
  if (ctx.defences.links !== 'mtls') return ctx.client;
  const config = JSON.parse(
    await readFile(servicePart(ctx, COMPROMISED).configFile, 'utf8'),
  ) as ServicePartConfig;
  if (config.identityDir === undefined || config.caFile === undefined) return ctx.client;
  const identity = await readIdentity(config.identityDir);
  return new Agent({
    connect: clientTlsConnector(identity, await readFile(config.caFile, 'utf8'), PEER.service),
  });
}
