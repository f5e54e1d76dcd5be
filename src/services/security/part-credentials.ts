import { readFileSync } from 'node:fs';
import { TrustedMsError } from '../../errors.js';
import { credentialDigest, type PartCredentialIndex } from '../../kernel/part-credential.js';

/**
 * The parts' own credentials as the security service knows them: a digest per part, so a request's
 * `Authorization: Bearer <secret>` names the one part that holds it, or none. Looked up by digest:
 * comparing digests of a 256-bit random secret leaks nothing useful through timing.
 */
export class PartCredentials {
  readonly #byDigest: ReadonlyMap<string, string>;

  constructor(index: PartCredentialIndex) {
    this.#byDigest = new Map(Object.entries(index.parts).map(([part, digest]) => [digest, part]));
  }

  static fromFile(file: string): PartCredentials {
    const index = JSON.parse(readFileSync(file, 'utf8')) as Partial<PartCredentialIndex> | null;
    if (typeof index?.parts !== 'object' || index.parts === null) {
      throw new TrustedMsError('INVALID_INPUT', `${file} is not an index of part credentials`);
    }
    return new PartCredentials({ parts: index.parts });
  }

  /** The part whose credential `authorization` carries, if any. */
  partOf(authorization: string | undefined): string | undefined {
    const given = /^Bearer (.+)$/.exec(authorization ?? '')?.[1];
    return given === undefined ? undefined : this.#byDigest.get(credentialDigest(given));
  }
}
