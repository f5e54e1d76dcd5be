import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Pool } from 'undici';
import { TrustedMsError } from '../../errors.js';
import { readPartConfig, readSecret } from '../../lab/part-config.js';
import { readIdentity } from '../../pki/identity-files.js';
import { clientTlsConnector } from '../../pki/mtls.js';
import { ProofVerifier } from '../../protocol/proof.js';
import { TicketVerifier } from '../../protocol/ticket.js';
import { fromErrorBody } from '../http.js';
import { RateLimiter } from '../rate-limit.js';
import { buildGateway, type Principal } from './app.js';
import { type AttestationEntry, AttestationTable, parseAttestationEntries } from './attestation-table.js';
import { createPool, poolUpstream, type Upstream } from './upstream.js';

const POLL_MS = 2000;
const KEYS_DEADLINE_MS = 10_000;

const config = readPartConfig('gateway');
const labToken = readSecret(config.labTokenFile);
const security = new Pool(config.securityUrl, {
  connections: 8,
  connectTimeout: 2000,
  headersTimeout: 5000,
  bodyTimeout: 5000,
});

/** JSON from the security service; its error body as a TrustedMsError on a non-2xx answer. */
async function call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> {
  const res = await security.request({
    method,
    path,
    headers: {
      authorization: `Bearer ${labToken}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.body.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  if (res.statusCode >= 300) throw fromErrorBody(res.statusCode, json);
  return json;
}

async function fetchKeys(): Promise<{ keys: Map<string, KeyObject>; issuer: string; audience: string }> {
  const deadline = Date.now() + KEYS_DEADLINE_MS;
  for (;;) {
    try {
      const r = (await call('GET', '/v1/keys')) as {
        issuer: string;
        audience: string;
        keys: { kid: string; alg: string; publicKeyPem: string }[];
      };
      const keys = new Map<string, KeyObject>();
      for (const k of r.keys) if (k.alg === 'EdDSA') keys.set(k.kid, createPublicKey(k.publicKeyPem));
      if (keys.size === 0) throw new TrustedMsError('KEY_NOT_FOUND', 'the security service has no EdDSA key');
      return { keys, issuer: r.issuer, audience: r.audience };
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

const fetchAttestations = async (): Promise<AttestationEntry[]> =>
  parseAttestationEntries(
    ((await call('GET', '/v1/services')) as { services?: unknown[] }).services?.map((s) => ({
      name: (s as AttestationEntry).name,
      state: (s as AttestationEntry).state,
    })),
  );

const trusted = config.posture === 'trusted';
let tls: { identity: Awaited<ReturnType<typeof readIdentity>>; caPem: string } | undefined;
if (trusted) {
  if (!config.identityDir || !config.caFile) {
    throw new TrustedMsError('INVALID_INPUT', 'a trusted gateway needs identityDir and caFile');
  }
  tls = { identity: await readIdentity(config.identityDir), caPem: readFileSync(config.caFile, 'utf8') };
}
const pools: Pool[] = [];
const upstreams: Record<string, Upstream> = {};
for (const [name, url] of Object.entries(config.services)) {
  const pool = createPool(
    url,
    tls === undefined ? {} : { connect: clientTlsConnector(tls.identity, tls.caPem, name) },
  );
  pools.push(pool);
  upstreams[name] = poolUpstream(pool);
}

const attestation = new AttestationTable();
let verifier: TicketVerifier | undefined;
if (config.posture !== 'none') {
  const { keys, issuer, audience } = await fetchKeys();
  verifier = new TicketVerifier({ keys, issuer, audience, posture: config.posture });
  await attestation.refresh(fetchAttestations);
}
const poll =
  config.posture === 'none'
    ? undefined
    : setInterval(() => void attestation.refresh(fetchAttestations), POLL_MS);
poll?.unref();

const { perUser, perClient, burst } = config.rateLimit;
const app = buildGateway({
  posture: config.posture,
  upstreams,
  attestation,
  labToken,
  ...(verifier ? { verifier, auth: poolUpstream(createPool(config.securityUrl)) } : {}),
  ...(trusted
    ? {
        sealKey: Buffer.from(readSecret(config.sealKeyFile), 'base64url'),
        proofs: new ProofVerifier(),
        rateLimit: { perUser: new RateLimiter(perUser, burst), perClient: new RateLimiter(perClient, burst) },
        authRateLimit: new RateLimiter(
          config.rateLimit.loginsPerClient,
          config.rateLimit.loginsPerClient * 2,
        ),
      }
    : {}),
  ...(config.posture === 'none'
    ? {
        checkPassword: async (user: string, password: string) =>
          (await call('POST', '/v1/internal/password', { user, password })) as Principal,
      }
    : {}),
});

await app.listen({ host: config.host, port: config.port });
console.log(
  `gateway (${config.posture}) listening on ${config.host}:${config.port}, ${pools.length} services`,
);

const stop = (): void => {
  if (poll) clearInterval(poll);
  setTimeout(() => process.exit(0), 1500).unref();
  void Promise.allSettled([app.close(), security.destroy(), ...pools.map((p) => p.destroy())]).finally(() =>
    process.exit(0),
  );
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
