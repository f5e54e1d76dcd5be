import { createHash } from 'node:crypto';
import canonicalizeModule from 'canonicalize';
import { TrustedMsError } from '../errors.js';

// canonicalize 2 (RFC 8785) is CommonJS with an ES-style d.ts (as in src/store/audit/record.ts).
const canonicalize = canonicalizeModule as unknown as (value: unknown) => string | undefined;

export const LAUNCH_MANIFEST_SCHEMA = 'trusted-ms/launch-manifest@1';

/**
 * How a service's program was started, besides its code tree: what else decides which code runs
 * and what it does. Two starts with equal code trees and equal manifests run the same thing
 * (docs/attestation.md, "The launch manifest").
 */
export interface LaunchManifest {
  schema: typeof LAUNCH_MANIFEST_SCHEMA;
  /** the Node binary started: a different or wrapped interpreter runs other code */
  interpreter: { path: string; sha256: string };
  /** the arguments after the interpreter: the program (in the code copy) and any flag */
  argv: string[];
  /** the complete environment the process got: `NODE_OPTIONS=--import=...` loads code */
  env: Record<string, string>;
  /** the part's config file as it was read for the start: where it calls (`peers`, `securityUrl`) */
  config: Record<string, unknown>;
}

/** SHA-256 (hex) of the manifest's RFC 8785 canonical JSON. */
export function manifestDigest(manifest: LaunchManifest): string {
  const text = canonicalize(manifest);
  if (text === undefined) throw new TrustedMsError('INTERNAL', 'launch manifest cannot be canonicalized');
  return createHash('sha256').update(text).digest('hex');
}

/**
 * The hash registered and compared in `attestation:measured` on the process runtime: the code
 * tree's hash and the manifest's digest, domain-separated so that it can never equal a bare tree
 * hash (a tree hash is not a valid answer for a service that has a manifest).
 */
export function launchHash(codeHash: string, manifest: LaunchManifest): string {
  const input = `${LAUNCH_MANIFEST_SCHEMA}\ncode ${codeHash}\nmanifest ${manifestDigest(manifest)}\n`;
  return `sha256:${createHash('sha256').update(input).digest('hex')}`;
}

/**
 * The fields in which two manifests differ, named as `interpreter`, `argv`, `env.<NAME>` and
 * `config.<key>`: what an operator needs to see on a mismatch.
 */
export function manifestDifferences(a: LaunchManifest, b: LaunchManifest): string[] {
  const same = (x: unknown, y: unknown) => canonicalize(x) === canonicalize(y);
  const keyed = (prefix: string, x: Record<string, unknown>, y: Record<string, unknown>) =>
    [...new Set([...Object.keys(x), ...Object.keys(y)])]
      .sort()
      .filter((k) => !same(x[k], y[k]))
      .map((k) => `${prefix}.${k}`);
  return [
    ...(same(a.schema, b.schema) ? [] : ['schema']),
    ...(same(a.interpreter, b.interpreter) ? [] : ['interpreter']),
    ...(same(a.argv, b.argv) ? [] : ['argv']),
    ...keyed('env', a.env, b.env),
    ...keyed('config', a.config, b.config),
  ];
}
