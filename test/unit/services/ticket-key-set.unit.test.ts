import { generateKeyPairSync } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jwkThumbprint } from '../../../src/crypto/thumbprint.js';
import { freePorts } from '../../../src/lab/ports.js';
import { issueTicket, type TicketClaims } from '../../../src/protocol/ticket.js';
import { ticketKeySet } from '../../../src/services/security/ticket-key-set.js';
import { SecurityClient } from '../../../src/services/security-client.js';

const ISSUER = 'trusted-ms://lab-1234/security';
const AUDIENCE = 'trusted-ms://lab-1234';
const replicaA = generateKeyPairSync('ed25519');
const replicaB = generateKeyPairSync('ed25519');
const stranger = generateKeyPairSync('ed25519');
const signer = (pair: typeof replicaA) => ({
  kid: jwkThumbprint(pair.privateKey),
  privateKey: pair.privateKey,
});

function claims(sub: string): TicketClaims {
  const iat = Math.floor(Date.now() / 1000);
  return {
    v: 1,
    iss: ISSUER,
    aud: AUDIENCE,
    sub,
    role: 'analyst',
    perms: {},
    iat,
    exp: iat + 600,
    jti: `jti-of-${sub}-0123456789`,
    posture: 'paper',
  };
}

describe('the ticket key set of security service replicas (issue 17)', () => {
  it('is every replica key once by key id, the own key first, from the private or the public half', () => {
    const set = ticketKeySet(replicaA.privateKey, [
      replicaB.publicKey,
      replicaA.publicKey,
      replicaB.publicKey,
    ]);
    expect(set.map((k) => k.kid)).toEqual([
      jwkThumbprint(replicaA.publicKey),
      jwkThumbprint(replicaB.publicKey),
    ]);
    expect(
      set.every((k) => k.alg === 'EdDSA' && k.publicKeyPem.startsWith('-----BEGIN PUBLIC KEY-----')),
    ).toBe(true);
    expect(JSON.stringify(set)).not.toMatch(/PRIVATE/);
    // Alone, it is the one key the security service published before replicas.
    expect(ticketKeySet(replicaA.privateKey).map((k) => k.kid)).toEqual([jwkThumbprint(replicaA.publicKey)]);
  });

  describe('as a part fetches it from one replica', () => {
    let server: Server;
    let url: string;
    beforeAll(async () => {
      // replica B's /v1/keys: its own key first, then A's
      server = createServer((_req, res) => {
        res.setHeader('content-type', 'application/json');
        res.end(
          JSON.stringify({
            issuer: ISSUER,
            audience: AUDIENCE,
            keys: ticketKeySet(replicaB.privateKey, [replicaA.publicKey]),
          }),
        );
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    afterAll(() => new Promise<void>((r) => server.close(() => r())));

    it("accepts either replica's tickets and refuses a key outside the set, even when the first replica it tries is down", async () => {
      const [dead] = (await freePorts(1)) as [number];
      const verifier = await new SecurityClient([`http://127.0.0.1:${dead}`, url]).ticketVerifier('paper');
      expect(verifier.verify(issueTicket(signer(replicaA), claims('alice'))).sub).toBe('alice');
      expect(verifier.verify(issueTicket(signer(replicaB), claims('bob'))).sub).toBe('bob');
      expect(() => verifier.verify(issueTicket(signer(stranger), claims('mallory')))).toThrow(
        expect.objectContaining({ code: 'TICKET_INVALID' }),
      );
    });
  });
});
