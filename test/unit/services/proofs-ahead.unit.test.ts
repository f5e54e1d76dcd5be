import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createProof, ProofVerifier } from '../../../src/protocol/proof.js';
import { PROOFS_AHEAD_FILE, ProofsAheadLog } from '../../../src/services/gateway/proofs-ahead.js';

/**
 * The third clock red team's A12: a request from a client whose clock runs 20-25 s fast, captured,
 * replayed once after a restart of the gateway (whose replay cache is empty and which refused only
 * proofs stamped before its start). Two verifiers here are the gateway before and after its restart.
 */

const T0 = 1_767_225_600_000;
const sessionKey = Buffer.alloc(32, 9);
const req = { sessionKey, method: 'GET', path: '/svc/orders/x', jti: 'abcdefghijklmnopq' };
const issuedBefore = T0 - 60_000;

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tms-ahead-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The gateway at wall time `wall`, started at `startedAt`, with or without the log. */
function gateway(wall: number, startedAt: number, log?: ProofsAheadLog): ProofVerifier {
  return new ProofVerifier({
    now: () => wall,
    notBeforeMs: startedAt,
    ...(log ? { aheadOfStart: log.earlier(), recordAhead: (jti, t) => log.record(jti, t) } : {}),
  });
}

const capturedAhead = (): string => createProof({ ...req, now: () => T0 + 22_000 });
const verify = (v: ProofVerifier, header: string) =>
  v.verify({ ...req, header, ticketIssuedAtMs: issuedBefore });

describe('a proof stamped ahead of the gateway, replayed after its restart', () => {
  it('without the log (before): accepted once more by the restarted gateway', () => {
    const header = capturedAhead();
    verify(gateway(T0, T0 - 1000), header);
    // killed, restarted by the watchman 1.5 s later: its start is before the stamp
    expect(() => verify(gateway(T0 + 1600, T0 + 1500), header)).not.toThrow();
  });

  it('with the log: refused (before-start), and the same session goes on with fresh proofs', () => {
    const header = capturedAhead();
    verify(gateway(T0, T0 - 1000, new ProofsAheadLog(dir, () => T0)), header);
    const restarted = gateway(T0 + 1600, T0 + 1500, new ProofsAheadLog(dir, () => T0 + 1500));
    expect(() => verify(restarted, header)).toThrow(
      expect.objectContaining({ code: 'PROOF_REPLAYED', reason: 'before-start' }),
    );
    // the fast client's next request is stamped after what it sent before: accepted
    expect(() => verify(restarted, createProof({ ...req, now: () => T0 + 23_700 }))).not.toThrow();
  });

  it('writes nothing for proofs stamped at or before its clock (clients on the lab’s clock)', async () => {
    const v = gateway(T0, T0 - 30_000, new ProofsAheadLog(dir, () => T0));
    verify(v, createProof({ ...req, now: () => T0 }));
    verify(v, createProof({ ...req, now: () => T0 - 20_000 }));
    await expect(readFile(join(dir, PROOFS_AHEAD_FILE))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('forgets an entry once the clock has passed its stamp: the start time then refuses it alone', () => {
    new ProofsAheadLog(dir, () => T0).record(req.jti, T0 + 22_000);
    expect(new ProofsAheadLog(dir, () => T0 + 21_000).earlier().get(req.jti)).toBe(T0 + 22_000);
    expect(new ProofsAheadLog(dir, () => T0 + 22_000).earlier().size).toBe(0);
  });

  it('refuses the proof when it cannot record it (SERVICE_UNAVAILABLE), and accepts nothing unrecorded', async () => {
    const log = new ProofsAheadLog(dir, () => T0);
    // A folder where its temp file goes: the write fails for root too (EISDIR), as on a full disk.
    const blocker = join(dir, `${PROOFS_AHEAD_FILE}.${process.pid}.tmp`);
    await mkdir(blocker);
    const v = gateway(T0, T0 - 1000, log);
    const header = capturedAhead();
    expect(() => verify(v, header)).toThrow(
      expect.objectContaining({ code: 'SERVICE_UNAVAILABLE', reason: 'ahead-unrecorded' }),
    );
    expect(new ProofsAheadLog(dir, () => T0).earlier().size).toBe(0);
    // not in the replay cache either: once it can be recorded, the same proof is accepted once
    await rm(blocker, { recursive: true });
    expect(() => verify(v, header)).not.toThrow();
    expect(() => verify(v, header)).toThrow(expect.objectContaining({ code: 'PROOF_REPLAYED' }));
    expect(new ProofsAheadLog(dir, () => T0).earlier().get(req.jti)).toBe(T0 + 22_000);
  });

  it('will not start on a record it cannot read: it would accept the replays it is for', async () => {
    await writeFile(join(dir, PROOFS_AHEAD_FILE), '{"v":1,"ahead":');
    expect(() => new ProofsAheadLog(dir, () => T0)).toThrow();
    await writeFile(join(dir, PROOFS_AHEAD_FILE), '{"v":2}');
    expect(() => new ProofsAheadLog(dir, () => T0)).toThrow(/not a record/);
  });
});
