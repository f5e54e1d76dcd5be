import { paperEncrypt } from '../../crypto/paper-scheme.js';
import { jsonRequest } from '../../kernel/http-client.js';
import { type Challenge, signatureToWire, signChallenge } from '../../protocol/challenge.js';
import { newExchangeKeyPair } from '../../protocol/session-key.js';
import { assertLabAddress, attempt } from '../http.js';
import { gatewayTargetUrl, TARGET } from '../target.js';
import { judgeByData, type Scenario, type ScenarioContext } from '../types.js';

/** What the attacker sniffed from the victim's own login. */
type Captured =
  | { kind: 'verify'; body: { id: string; signature: string } }
  | { kind: 'basic'; header: string };

/**
 * The victim logs in for real; the attacker has captured the victim's answer to the login
 * challenge (the signed challenge in trusted, the ticket encrypted with the private key in paper,
 * the basic credential in none) and replays it from its own client.
 */
export const replayedChallenge: Scenario = {
  id: 'masquerade.replayed-challenge',
  title: "Replay the victim's captured login answer",
  paperAttack: 1,
  technique: 'T1550',
  description:
    "The victim logs in normally. The attacker captured the victim's answer on the way (`POST /auth/verify {id, signature}`: the signed challenge, or in the paper posture the challenge ticket encrypted with the victim's private key) and sends it again from its own client to obtain a session ticket. In the none posture there is no challenge: the captured HTTP basic credential is replayed against a service instead.",
  evidence:
    'The status of the replayed verify (a ticket in the answer = succeeded) or, in none, of the read done with the replayed basic credential.',
  expected: { none: 'succeeded', paper: 'blocked', trusted: 'blocked' },

  async setup(ctx) {
    ctx.scratch.captured = await victimLogin(ctx);
  },

  async detonate(ctx) {
    const captured = ctx.scratch.captured as Captured;
    if (captured.kind === 'basic') {
      await attempt(ctx, {
        action: 'read the victim-only record with the replayed basic credential',
        url: gatewayTargetUrl(ctx.lab),
        headers: { authorization: captured.header },
        dispatcher: ctx.client,
        marker: TARGET.marker,
      });
      return;
    }
    await attempt(ctx, {
      action: "replay the victim's captured challenge answer to get a ticket",
      url: `${ctx.lab.gatewayUrl}/auth/verify`,
      body: JSON.stringify(captured.body),
      dispatcher: ctx.client,
      marker: '"ticket"',
    });
  },

  judge: judgeByData,
};

/** The victim's login, step by step, keeping a copy of the answer as it goes over the wire. */
async function victimLogin(ctx: ScenarioContext): Promise<Captured> {
  const { lab, victim } = ctx;
  if (ctx.defences.login === 'basic') {
    return {
      kind: 'basic',
      header: `Basic ${Buffer.from(`${victim.name}:${victim.password}`).toString('base64')}`,
    };
  }
  const gw = assertLabAddress(lab.gatewayUrl).origin;
  const opts = { timeoutMs: ctx.timeoutMs };
  let body: { id: string; signature: string };
  if (ctx.defences.login !== 'challenge') {
    const c = await jsonRequest<{ id: string; ticket: string }>(`${gw}/auth/challenge`, {
      ...opts,
      body: { user: victim.name, password: victim.password },
    });
    const encrypted = paperEncrypt(victim.privateKey, Buffer.from(c.ticket, 'base64url'));
    body = { id: c.id, signature: encrypted.toString('base64url') };
  } else {
    const exchange = newExchangeKeyPair();
    const c = await jsonRequest<Challenge>(`${gw}/auth/challenge`, {
      ...opts,
      body: { user: victim.name, password: victim.password, clientKey: exchange.publicKeyRaw },
    });
    body = { id: c.id, signature: signatureToWire(signChallenge(victim.privateKey, c)) };
  }
  // The victim's own verify goes through first: the attacker replays what it saw afterwards.
  await jsonRequest(`${gw}/auth/verify`, { ...opts, body });
  return { kind: 'verify', body };
}
