import { type KeyObject, verify } from 'node:crypto';
import { type Ssh2ParsedKey, ssh2 } from '../crypto/openssh.js';
import { publicKeyFromSshBlob } from '../crypto/public-key-input.js';
import { jwkThumbprint } from '../crypto/thumbprint.js';
import { isTrustedMsError, TrustedMsError } from '../errors.js';

/**
 * Signing the login challenge through ssh-agent (`user login --agent`): the private key stays in the
 * agent, or the token behind it. For Ed25519 the agent's signature is the plain Ed25519 signature
 * over the bytes it is given (RFC 8709 §6), so it is exactly what the protocol verifies. RSA keys in
 * an agent are refused: an agent signs RSA with PKCS#1 v1.5 (`rsa-sha2-256`/`-512`, RFC 8332), and
 * the protocol accepts RSA only as PSS (docs/protocol.md, "Keys from ssh-agent").
 */

export interface ChallengeSigner {
  /** RFC 7638 thumbprint of the public key that signs */
  readonly thumbprint: string;
  sign(data: Buffer): Promise<Buffer>;
}

interface AgentKey {
  thumbprint: string;
  type: 'ed25519' | 'rsa';
  publicKey: KeyObject;
  /** ssh2's own parsed key, which its agent client takes back to name the key to sign with */
  handle: Ssh2ParsedKey;
}

const LIST_TIMEOUT_MS = 5000;
/** An agent may ask its user to confirm each use (`ssh-add -c`): leave time for that. */
const SIGN_TIMEOUT_MS = 60_000;

function withTimeout<T>(
  ms: number,
  what: string,
  run: (cb: (err: Error | null | undefined, v?: T) => void) => void,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    run((err, v) => {
      clearTimeout(timer);
      if (err || v === undefined) reject(err ?? new Error(`${what} gave nothing`));
      else resolve(v);
    });
  });
}

function unavailable(message: string, cause?: unknown): TrustedMsError {
  return new TrustedMsError('AGENT_UNAVAILABLE', message, {
    ...(cause === undefined ? {} : { cause }),
    actions: [
      'start one and add your key: eval "$(ssh-agent)" && ssh-add ~/.ssh/id_ed25519',
      'or log in with --key FILE',
    ],
  });
}

/** The Ed25519 and RSA keys the agent holds (others, e.g. ECDSA, are skipped). */
export async function agentKeys(socket: string): Promise<AgentKey[]> {
  const agent = new (ssh2().OpenSSHAgent)(socket);
  let listed: Ssh2ParsedKey[];
  try {
    listed = await withTimeout(LIST_TIMEOUT_MS, 'listing keys', (cb) => agent.getIdentities(cb));
  } catch (err) {
    throw unavailable(`cannot reach ssh-agent at ${socket}`, err);
  }
  const out: AgentKey[] = [];
  for (const k of listed) {
    const blob = k.getPublicSSH();
    try {
      const publicKey = publicKeyFromSshBlob(blob);
      const type = publicKey.asymmetricKeyType === 'rsa' ? 'rsa' : 'ed25519';
      out.push({ thumbprint: jwkThumbprint(publicKey), type, publicKey, handle: k });
    } catch (err) {
      if (!isTrustedMsError(err)) throw err;
    }
  }
  return out;
}

/**
 * Picks the agent's key for `user`: one of `registered` (its registered thumbprints) when they are
 * known, else the agent's only Ed25519 key. Each refusal says what to do.
 */
export async function agentSigner(opts: {
  user: string;
  socket?: string | undefined;
  registered?: string[] | undefined;
}): Promise<ChallengeSigner> {
  const socket = opts.socket ?? process.env.SSH_AUTH_SOCK;
  if (socket === undefined || socket === '') {
    throw unavailable('SSH_AUTH_SOCK is not set: no ssh-agent to sign with');
  }
  const keys = await agentKeys(socket);
  if (keys.length === 0) {
    throw new TrustedMsError('AGENT_UNAVAILABLE', `the ssh-agent at ${socket} holds no Ed25519 or RSA key`, {
      actions: ['add yours: ssh-add ~/.ssh/id_ed25519', 'or log in with --key FILE'],
    });
  }
  const { registered } = opts;
  const candidates = registered === undefined ? keys : keys.filter((k) => registered.includes(k.thumbprint));
  const chosen = candidates.find((k) => k.type === 'ed25519');
  if (chosen === undefined && candidates.length > 0) {
    throw new TrustedMsError(
      'KEY_TYPE_UNSUPPORTED',
      `${opts.user}'s key in ssh-agent is RSA, which an agent signs with PKCS#1 v1.5 (rsa-sha2-256); the protocol accepts RSA only as PSS`,
      {
        actions: [
          'add an Ed25519 key to the agent and register it (user key add)',
          'or log in with the RSA key file: --key FILE',
        ],
      },
    );
  }
  if (chosen === undefined) {
    const inAgent = keys.map((k) => k.thumbprint).join(', ');
    throw new TrustedMsError(
      'KEY_NOT_FOUND',
      `none of the ssh-agent's keys (${inAgent}) is registered for ${opts.user}; registered: ${
        registered?.length ? registered.join(', ') : '(none)'
      }`,
      {
        actions: [`register yours: trusted-ms user key add ${opts.user} --public-key ~/.ssh/id_ed25519.pub`],
      },
    );
  }
  if (registered === undefined && candidates.filter((k) => k.type === 'ed25519').length > 1) {
    throw new TrustedMsError(
      'AGENT_UNAVAILABLE',
      'the ssh-agent holds several Ed25519 keys and the registered ones are unknown here',
      {
        actions: [
          'run from the lab home (--home) so the registered keys can be read',
          'or keep one key in the agent',
        ],
      },
    );
  }
  const agent = new (ssh2().OpenSSHAgent)(socket);
  return {
    thumbprint: chosen.thumbprint,
    async sign(data) {
      let sig: Buffer;
      try {
        sig = await withTimeout(SIGN_TIMEOUT_MS, 'signing', (cb) => agent.sign(chosen.handle, data, {}, cb));
      } catch (err) {
        throw unavailable(
          `ssh-agent at ${socket} did not sign (refused, locked, or the key was removed)`,
          err,
        );
      }
      // An agent (or a token behind it) that answers with anything else fails here, not at the server.
      if (!verify(null, data, chosen.publicKey, sig)) {
        throw new TrustedMsError(
          'SIGNATURE_INVALID',
          "ssh-agent's signature does not verify with its own key",
        );
      }
      return sig;
    },
  };
}
