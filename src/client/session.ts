import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Posture } from '../defences/posture.js';
import { fileError } from '../disk-errors.js';
import { errnoCode, TrustedMsError } from '../errors.js';
import { makeDir, writeFileDurably } from '../fs-sync.js';

/** What `user login` keeps for `call`: in a 0600 file, since a ticket with its key is a credential. */
export interface Session {
  user: string;
  labId: string;
  posture: Posture;
  /** paper and trusted */
  ticket?: string;
  /** trusted: the session key (base64url) that keys each request's proof */
  sessionKey?: string;
  /** none: HTTP basic credentials, the only thing that posture knows */
  basic?: string;
  expiresAt?: number;
  thumbprint?: string;
}

function sessionDir(home: string): string {
  return join(home, 'sessions');
}

export async function saveSession(home: string, session: Session): Promise<string> {
  const file = join(sessionDir(home), `${session.user}.json`);
  try {
    await makeDir(sessionDir(home));
    await writeFileDurably(file, `${JSON.stringify(session, null, 2)}\n`, 0o600);
  } catch (err) {
    // The ticket was issued (and audited) but cannot be kept: say why, and that logging in again
    // once the disk is fixed is all it takes (the old session file, if any, is left as it was).
    throw fileError(file, 'save the session in', err);
  }
  return file;
}

/** The session of `user`, or of the only user logged in when none is named. */
export async function loadSession(home: string, user?: string): Promise<Session> {
  let name = user;
  if (name === undefined) {
    const files = (await readdir(sessionDir(home)).catch(() => [] as string[])).filter((f) =>
      f.endsWith('.json'),
    );
    if (files.length !== 1) {
      throw new TrustedMsError(
        'TICKET_MISSING',
        files.length === 0 ? 'nobody is logged in' : 'several users are logged in',
        {
          actions: [
            files.length === 0 ? 'log in: trusted-ms user login <name>' : 'say which with --as <user>',
          ],
        },
      );
    }
    name = (files[0] as string).replace(/\.json$/, '');
  }
  try {
    return JSON.parse(await readFile(join(sessionDir(home), `${name}.json`), 'utf8')) as Session;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') {
      throw new TrustedMsError('TICKET_MISSING', `${name} is not logged in`, {
        actions: [`trusted-ms user login ${name}`],
      });
    }
    throw new TrustedMsError('STORE_CORRUPT', `the session file of ${name} is unreadable`, {
      actions: [`log in again: trusted-ms user login ${name}`],
    });
  }
}
