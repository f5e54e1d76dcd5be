/**
 * JSON Schemas of the login's request bodies (docs/protocol.md, "Where it fits: the login flow"):
 * the security service validates requests against them, and the gateway, which relays the bodies
 * unparsed, shows the same ones in its OpenAPI document. Shared here so the two cannot drift.
 */

const NAME = { type: 'string', minLength: 1, maxLength: 64 } as const;
const B64URL = { type: 'string', minLength: 1, maxLength: 4096, pattern: '^[A-Za-z0-9_-]+$' } as const;

export const CHALLENGE_REQUEST_BODY = {
  type: 'object',
  required: ['user', 'password'],
  additionalProperties: false,
  properties: {
    user: NAME,
    password: { type: 'string', minLength: 1, maxLength: 1024 },
    clientKey: {
      ...B64URL,
      description: 'trusted posture: a fresh X25519 public key, raw 32 bytes, unpadded base64url',
    },
  },
} as const;

export const VERIFY_REQUEST_BODY = {
  type: 'object',
  required: ['id', 'signature'],
  additionalProperties: false,
  properties: {
    id: { ...B64URL, description: 'the challenge id' },
    signature: { ...B64URL, description: 'the signature of the signing bytes, unpadded base64url' },
  },
} as const;
