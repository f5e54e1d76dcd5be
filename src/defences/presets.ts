import { TrustedMsError } from '../errors.js';
import { POSTURES, type Posture } from './posture.js';

/**
 * The lab's defences, one strategy each, and the postures as presets of them: the one place that
 * knows what `none`, `paper` and `trusted` mean (DESIGN.md, "Defences, not postures"). Every part
 * is handed the strategy objects its defences call for (src/defences/*) and never asks which
 * posture it is in.
 */
export const DEFENCE_CHOICES = {
  /** how a user logs in: HTTP basic at the gateway, the paper's RSA private-encrypt, a signed challenge with an X25519 session key */
  login: ['basic', 'paper', 'challenge'],
  /** what authenticates a request: basic at the gateway, a bearer ticket, a ticket bound to the session key (a proof per request) */
  request: ['basic', 'bearer', 'bound'],
  /** what decides whether a service may serve: nothing, its own report of its hash, a measurement from outside */
  attestation: ['none', 'self', 'measured'],
  /** the links between the parts: plain HTTP, or mutual TLS with lab-CA identities */
  links: ['plain', 'mtls'],
  /** per-address and per-user rate limits, login limits and lock-out */
  limits: ['off', 'on'],
  /**
   * the users' link to the gateway: plain HTTP, or HTTPS with a lab-CA certificate that every
   * client checks (its own defence, not a value of `links`: the parts' mutual TLS and the users'
   * server-authenticated TLS protect different links, and each can be removed alone)
   */
  edge: ['http', 'tls'],
  /**
   * what the parts take from the control plane's feeds (keys, attestation table, revocation list):
   * whatever answers, kept for ever; or only feeds signed with the lab's feed key, never older than
   * the one held, never acted on past the lab's maximum staleness (src/defences/feeds.ts)
   */
  feeds: ['plain', 'signed'],
  /**
   * the audit log's evidence: its hash chain alone, or the chain plus checkpoints signed by an audit
   * key kept out of the lab home (src/store/audit/checkpoint-files.ts): only those show a rewrite
   * whose hashes were all recomputed (audit.rewrite)
   */
  audit: ['chain', 'signed'],
} as const;

export type DefenceName = keyof typeof DEFENCE_CHOICES;
export type Defences = { readonly [K in DefenceName]: (typeof DEFENCE_CHOICES)[K][number] };

export const DEFENCE_NAMES = Object.keys(DEFENCE_CHOICES) as DefenceName[];

export const PRESETS: Readonly<Record<Posture, Defences>> = Object.freeze({
  none: {
    login: 'basic',
    request: 'basic',
    attestation: 'none',
    links: 'plain',
    limits: 'off',
    edge: 'http',
    feeds: 'plain',
    audit: 'chain',
  },
  // paper keeps HTTP at the edge: the paper's scheme as written, which sends the password to the
  // gateway in the clear (mitm.edge-eavesdrop shows it)
  paper: {
    login: 'paper',
    request: 'bearer',
    attestation: 'self',
    links: 'plain',
    limits: 'off',
    edge: 'http',
    feeds: 'plain',
    audit: 'chain',
  },
  trusted: {
    login: 'challenge',
    request: 'bound',
    attestation: 'measured',
    links: 'mtls',
    limits: 'on',
    edge: 'tls',
    feeds: 'signed',
    audit: 'signed',
  },
});

/**
 * What `--without <defence>` puts in place of a defence: the next weaker strategy, all else as the
 * preset has it. The login cannot be taken away alone: a bound request needs the session key only
 * the challenge login agrees, and a bearer ticket needs a login that issues one.
 */
export const ABLATIONS = {
  'request:bound': { request: 'bearer' },
  'attestation:measured': { attestation: 'none' },
  'links:mtls': { links: 'plain' },
  'limits:on': { limits: 'off' },
  'edge:tls': { edge: 'http' },
  'feeds:signed': { feeds: 'plain' },
  'audit:signed': { audit: 'chain' },
} as const satisfies Record<string, Partial<Defences>>;

export type Ablation = keyof typeof ABLATIONS;
export const ABLATION_NAMES = Object.keys(ABLATIONS) as Ablation[];

/** `--without` values checked against the posture's own defences: only a defence it has can go. */
export function parseAblations(values: readonly string[], posture: Posture): Ablation[] {
  const out: Ablation[] = [];
  for (const value of values) {
    if (!(ABLATION_NAMES as string[]).includes(value)) {
      throw new TrustedMsError(
        'INVALID_INPUT',
        `--without ${value}: not a defence that can be removed; one of ${ABLATION_NAMES.join(', ')}`,
      );
    }
    const ablation = value as Ablation;
    const [name, choice] = ablation.split(':') as [DefenceName, string];
    if (PRESETS[posture][name] !== choice) {
      throw new TrustedMsError(
        'INVALID_INPUT',
        `--without ${value}: the ${posture} posture has ${name}:${PRESETS[posture][name]}, not ${value}`,
      );
    }
    if (!out.includes(ablation)) out.push(ablation);
  }
  return out;
}

/** The defences of a posture with some of them removed. */
export function defencesFor(posture: Posture, without: readonly Ablation[] = []): Defences {
  let d: Defences = PRESETS[posture];
  for (const a of without) d = { ...d, ...ABLATIONS[a] };
  return Object.freeze(d);
}

/** `login:challenge request:bound ...`, in the table's order. */
export function defenceList(d: Defences): string[] {
  return DEFENCE_NAMES.map((n) => `${n}:${d[n]}`);
}

/** How a lab's defences are named in reports: the posture, and what was removed from it. */
export function labelOf(posture: Posture, without: readonly Ablation[] = []): string {
  return without.length === 0 ? posture : `${posture} -${without.join(' -')}`;
}

/** The preset a set of defences is exactly, if any (an old lab state file names only its posture). */
export function presetOf(d: Defences): Posture | undefined {
  return POSTURES.find((p) => DEFENCE_NAMES.every((n) => PRESETS[p][n] === d[n]));
}

/** The ticket a login issues: the paper's bearer ticket, or one bound to a session key (`cnf`). */
export function ticketKindOf(login: Defences['login']): 'paper' | 'trusted' | undefined {
  return login === 'basic' ? undefined : login === 'paper' ? 'paper' : 'trusted';
}
