import { KeyObject } from 'node:crypto';
import type { Dispatcher } from 'undici';
import { paperEncrypt } from '../crypto/paper-scheme.js';
import { isTrustedMsError, TrustedMsError } from '../errors.js';
import { gatewayRequest } from '../kernel/edge-client.js';
import type { LabState } from '../kernel/lab-state.js';
import {
  type Challenge,
  challengeSigningBytes,
  signatureToWire,
  signChallenge,
} from '../protocol/challenge.js';
import { labIssuer } from '../protocol/issuer.js';
import { deriveSessionKey, newExchangeKeyPair } from '../protocol/session-key.js';
import type { Session } from './session.js';
import type { ChallengeSigner } from './ssh-agent.js';

export interface LoginTimings {
  challengeMs: number;
  signMs: number;
  verifyMs: number;
}

/**
 * The user's side of the handshake, through the gateway: password for a challenge, the challenge
 * signed with the private key (trusted) or the ticket encrypted with it (paper), then the session
 * ticket and, in trusted, the session key from the X25519 exchange bound into the challenge.
 */
export async function login(
  lab: Pick<LabState, 'labId' | 'posture' | 'defences' | 'gatewayUrl'>,
  user: string,
  password: string,
  /** the private key, or a signer that holds it elsewhere (ssh-agent: trusted posture only) */
  privateKey: KeyObject | ChallengeSigner | undefined,
  /** the connection to use (a load's virtual user has its own); the global one by default */
  dispatcher?: Dispatcher,
): Promise<{ session: Session; timings: LoginTimings }> {
  try {
    return await loginOnce(lab, user, password, privateKey, dispatcher);
  } catch (err) {
    // With security service replicas, a replica that took the challenge and died before answering
    // leaves it used: the gateway's second try of the verify step is refused CHALLENGE_UNKNOWN
    // (src/services/gateway/login-replicas.ts). The challenge was ours and is spent, so the login
    // starts again once, with a new one; a second refusal is the answer.
    if (!isTrustedMsError(err) || err.code !== 'CHALLENGE_UNKNOWN') throw err;
    return loginOnce(lab, user, password, privateKey, dispatcher);
  }
}

async function loginOnce(
  lab: Pick<LabState, 'labId' | 'posture' | 'defences' | 'gatewayUrl'>,
  user: string,
  password: string,
  privateKey: KeyObject | ChallengeSigner | undefined,
  dispatcher?: Dispatcher,
): Promise<{ session: Session; timings: LoginTimings }> {
  const via = dispatcher === undefined ? {} : { dispatcher };
  const scheme = lab.defences.login;
  if (scheme === 'basic') {
    // No framework: the gateway checks HTTP basic credentials on every call; check them once now.
    const basic = Buffer.from(`${user}:${password}`).toString('base64');
    const t0 = performance.now();
    await gatewayRequest(lab.gatewayUrl, '/auth/basic', {
      headers: { authorization: `Basic ${basic}` },
      ...via,
    });
    return {
      session: { user, labId: lab.labId, posture: lab.posture, basic },
      timings: { challengeMs: 0, signMs: 0, verifyMs: performance.now() - t0 },
    };
  }
  if (!privateKey)
    throw new TrustedMsError('KEY_NOT_FOUND', `login:${scheme} (${lab.posture}) needs ${user}'s private key`);
  const t0 = performance.now();
  if (scheme !== 'challenge') {
    if (!(privateKey instanceof KeyObject)) {
      throw new TrustedMsError(
        'POSTURE_MISMATCH',
        "the paper posture's scheme encrypts with the RSA private key itself: an agent cannot do it",
        { actions: ['log in with --key FILE (an RSA key) in the paper posture'] },
      );
    }
    const c = await gatewayRequest<{ id: string; ticket: string }>(lab.gatewayUrl, '/v1/auth/challenge', {
      body: { user, password },
      ...via,
    });
    const t1 = performance.now();
    const encrypted = paperEncrypt(privateKey, Buffer.from(c.ticket, 'base64url'));
    const t2 = performance.now();
    const v = await gatewayRequest<{ ticket: string; expiresAt: number; thumbprint: string }>(
      lab.gatewayUrl,
      '/v1/auth/verify',
      {
        body: { id: c.id, signature: encrypted.toString('base64url') },
        ...via,
      },
    );
    return {
      session: {
        user,
        labId: lab.labId,
        posture: lab.posture,
        ticket: v.ticket,
        expiresAt: v.expiresAt,
        thumbprint: v.thumbprint,
      },
      timings: { challengeMs: t1 - t0, signMs: t2 - t1, verifyMs: performance.now() - t2 },
    };
  }
  const exchange = newExchangeKeyPair();
  const challenge = await gatewayRequest<Challenge>(lab.gatewayUrl, '/v1/auth/challenge', {
    body: { user, password, clientKey: exchange.publicKeyRaw },
    ...via,
  });
  const t1 = performance.now();
  // Sign only what was meant for this lab's security service, for this user, with our key in it.
  if (
    challenge.audience !== labIssuer(lab.labId) ||
    challenge.user !== user ||
    challenge.clientKey !== exchange.publicKeyRaw
  ) {
    throw new TrustedMsError(
      'AUDIENCE_MISMATCH',
      'the challenge was not issued for this login: refusing to sign it',
    );
  }
  const signature = signatureToWire(
    privateKey instanceof KeyObject
      ? signChallenge(privateKey, challenge)
      : await privateKey.sign(challengeSigningBytes(challenge)),
  );
  const t2 = performance.now();
  const v = await gatewayRequest<{
    ticket: string;
    expiresAt: number;
    serverKey: string;
    thumbprint: string;
  }>(lab.gatewayUrl, '/v1/auth/verify', { body: { id: challenge.id, signature }, ...via });
  const sessionKey = deriveSessionKey(exchange.privateKey, v.serverKey, challenge.id);
  return {
    session: {
      user,
      labId: lab.labId,
      posture: lab.posture,
      ticket: v.ticket,
      sessionKey: sessionKey.toString('base64url'),
      expiresAt: v.expiresAt,
      thumbprint: v.thumbprint,
    },
    timings: { challengeMs: t1 - t0, signMs: t2 - t1, verifyMs: performance.now() - t2 },
  };
}
