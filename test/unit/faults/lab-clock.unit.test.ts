import { generateKeyPairSync } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isTrustedMsError } from '../../../src/errors.js';
import { IAT_LEEWAY_SECONDS, LabClock, labTimeOf } from '../../../src/protocol/lab-clock.js';
import { createProof, ProofVerifier } from '../../../src/protocol/proof.js';
import { issueTicket, type TicketClaims, TicketVerifier } from '../../../src/protocol/ticket.js';
import { createHttpApp } from '../../../src/services/http.js';
import { RevocationFeed } from '../../../src/services/revocation-feed.js';
import { RevocationBook } from '../../../src/services/security/revocations.js';
import { revocationFeedRoutes } from '../../../src/services/security/routes/revocations.js';
import { SecurityClient } from '../../../src/services/security-client.js';
import {
  homeLabClock,
  homeLabClockAtFirstUse,
  LAB_CLOCK_FILE,
  MARK_AHEAD_MS,
  runningLabTime,
} from '../../../src/store/lab-clock-mark.js';
import { openLabStore } from '../../../src/store/open.js';
import { revokeUserIn } from '../../../src/users/revocations.js';
import { addUser } from '../../../src/users/users.js';

/**
 * The lab's one clock (src/protocol/lab-clock.ts): the security service's, read by the other parts
 * on their monotonic clocks. Here with injected wall and monotonic clocks, in the red team's
 * sequences (docs/faults.md); test/integration/faults/clock.integration.test.ts runs them on a real
 * lab under libfaketime.
 */

const HOUR = 3_600_000;
const T0 = 1_767_225_600_000;

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const KEY = { kid: 'k1', privateKey };
const ISSUER = 'trusted-ms://lab-clock/security';

function ticketAt(iatSeconds: number, sub = 'alice'): string {
  const claims: TicketClaims = {
    v: 1,
    iss: ISSUER,
    aud: 'trusted-ms://lab-clock',
    sub,
    role: 'admin',
    perms: { '*': ['read'] },
    iat: iatSeconds,
    exp: iatSeconds + 3600,
    jti: `jti-${sub}-${iatSeconds}-abcdefgh`,
    posture: 'paper',
  };
  return issueTicket(KEY, claims);
}

/** A part's verifier on its lab clock, as SecurityClient.ticketVerifier makes it. */
function partVerifier(clock: LabClock): TicketVerifier {
  return new TicketVerifier({
    keys: new Map([['k1', publicKey]]),
    issuer: ISSUER,
    now: () => clock.now(),
    issuedAtLeewaySeconds: IAT_LEEWAY_SECONDS,
  });
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isTrustedMsError(err)) return err.code;
    throw err;
  }
  return 'OK';
}

/** One machine: one wall clock the test steps, one monotonic clock every part reads. */
function machine() {
  const m = { wall: T0, mono: 1000 };
  return {
    m,
    wall: () => m.wall,
    monotonic: () => m.mono,
    /** both clocks move on by `ms` of real time */
    pass(ms: number) {
      m.wall += ms;
      m.mono += ms;
    },
  };
}

describe('a part on the lab clock', () => {
  it('has no time until told one, then carries it on its monotonic clock', () => {
    const mono = { t: 500 };
    const clock = new LabClock(() => mono.t);
    expect(clock.started).toBe(false);
    expect(clock.now()).toBeNaN();
    // A verifier on a clock with no time refuses rather than guess.
    expect(codeOf(() => partVerifier(clock).verify(ticketAt(T0 / 1000)))).toBe('TICKET_INVALID');
    clock.adopt(T0, 400);
    expect(clock.now()).toBe(T0 + 100);
    mono.t += 60_000;
    expect(clock.now()).toBe(T0 + 60_100);
  });

  it('takes a later lab time, never an earlier one (a restarted or fake security service cannot move it back)', () => {
    const mono = { t: 0 };
    const clock = new LabClock(() => mono.t);
    expect(clock.adopt(T0)).toBe(true);
    expect(clock.adopt(T0 - HOUR)).toBe(false);
    expect(clock.adopt(Number.NaN)).toBe(false);
    expect(clock.now()).toBe(T0);
    expect(clock.adopt(T0 + 5000)).toBe(true);
    expect(clock.now()).toBe(T0 + 5000);
  });

  it('reads the lab time of an answer only when it is a positive whole number', () => {
    expect(labTimeOf({ labTimeMs: T0 })).toBe(T0);
    for (const bad of [null, 'x', {}, { labTimeMs: '1' }, { labTimeMs: 1.5 }, { labTimeMs: -1 }]) {
      expect(labTimeOf(bad)).toBeUndefined();
    }
  });
});

describe("the red team's sequences on one lab clock", () => {
  let home: string;
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'tms-lab-clock-'));
  });
  afterEach(async () => {
    await rm(home, { recursive: true, force: true });
  });

  it('(a) a forward step of 2 h corrected 2 s later, with logins during it: nobody is locked out', () => {
    const box = machine();
    const security = homeLabClock(home, { wall: box.wall, monotonic: box.monotonic });
    const gatewayClock = new LabClock(box.monotonic);
    gatewayClock.adopt(security());
    const gateway = partVerifier(gatewayClock);
    const before = ticketAt(Math.floor(security() / 1000), 'bob');
    expect(codeOf(() => gateway.verify(before))).toBe('OK');

    box.m.wall += 2 * HOUR;
    const during = ticketAt(Math.floor(security() / 1000));
    expect(codeOf(() => gateway.verify(during))).toBe('OK');
    box.pass(2000);
    box.m.wall -= 2 * HOUR;
    box.pass(3 * 60_000);
    // Minutes later: fresh tickets work (paper: not TICKET_EXPIRED; trusted: not "issued in the
    // future"), and so do those from before and during the step.
    expect(codeOf(() => gateway.verify(ticketAt(Math.floor(security() / 1000), 'carol')))).toBe('OK');
    expect(codeOf(() => gateway.verify(during))).toBe('OK');
    expect(codeOf(() => gateway.verify(before))).toBe('OK');
  });

  it('(b) a 5 s forward blip with a login during it: every new ticket works, also 60 s later', () => {
    const box = machine();
    const security = homeLabClock(home, { wall: box.wall, monotonic: box.monotonic });
    const serviceClock = new LabClock(box.monotonic);
    serviceClock.adopt(security());
    const service = partVerifier(serviceClock);
    box.m.wall += 5000;
    expect(codeOf(() => service.verify(ticketAt(Math.floor(security() / 1000))))).toBe('OK');
    box.m.wall -= 5000;
    box.pass(60_000);
    expect(codeOf(() => service.verify(ticketAt(Math.floor(security() / 1000), 'bob')))).toBe('OK');
  });

  it('(c) a security service restarted across a 1 h step back: its first reading is after every one it handed out', () => {
    const box = machine();
    const first = homeLabClock(home, { wall: box.wall, monotonic: box.monotonic });
    box.pass(30_000);
    const lastHandedOut = first();
    box.pass(500);
    box.m.wall -= HOUR;
    // A new process: its monotonic clock starts again.
    box.m.mono = 0;
    const second = homeLabClock(home, { wall: box.wall, monotonic: box.monotonic });
    const notBefore = second();
    expect(notBefore).toBeGreaterThan(lastHandedOut);
    // So a revocation then refuses the tickets issued before the restart (iat < notBefore).
    expect(Math.floor(notBefore / 1000) + 1).toBeGreaterThan(Math.floor(lastHandedOut / 1000));
  });

  it('(d) a part restarted after a step back starts from the lab time, not from its wall clock', () => {
    const box = machine();
    const security = homeLabClock(home, { wall: box.wall, monotonic: box.monotonic });
    box.pass(10_000);
    const issued = ticketAt(Math.floor(security() / 1000));
    box.m.wall -= HOUR;
    const restarted = new LabClock(box.monotonic);
    restarted.adopt(security());
    expect(codeOf(() => partVerifier(restarted).verify(issued))).toBe('OK');
  });
});

describe('a gateway restarted while the lab clock leads its wall clock (the mark after a quick restart of the security service)', () => {
  const sessionKey = Buffer.alloc(32, 7);
  const req = { sessionKey, method: 'GET', path: '/svc/a/x', jti: 'abcdefghijklmnop' };
  const wallAtStart = T0;
  const labAtStart = T0 + MARK_AHEAD_MS;
  const verifier = () =>
    new ProofVerifier({
      now: () => wallAtStart + 100,
      notBeforeMs: wallAtStart,
      ticketsIssuedFromMs: labAtStart,
    });

  it('refuses a proof captured before it started, of a ticket issued (on the lab clock) before', () => {
    const captured = createProof({ ...req, now: () => wallAtStart - 500 });
    expect(() =>
      verifier().verify({ ...req, header: captured, ticketIssuedAtMs: labAtStart - 1000 }),
    ).toThrow(expect.objectContaining({ code: 'PROOF_REPLAYED', reason: 'before-start' }));
  });

  it("accepts that session's next request, and a proof of a ticket issued since", () => {
    const fresh = createProof({ ...req, now: () => wallAtStart + 50 });
    expect(() =>
      verifier().verify({ ...req, header: fresh, ticketIssuedAtMs: labAtStart - 1000 }),
    ).not.toThrow();
    const early = createProof({ ...req, now: () => wallAtStart - 500 });
    expect(() => verifier().verify({ ...req, header: early, ticketIssuedAtMs: labAtStart })).not.toThrow();
  });
});

describe("the security service's high-water mark", () => {
  let home: string;
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'tms-lab-clock-'));
  });
  afterEach(async () => {
    await chmod(home, 0o700).catch(() => undefined);
    await rm(home, { recursive: true, force: true });
  });

  const markIn = async (dir: string): Promise<number> =>
    (JSON.parse(await readFile(join(dir, LAB_CLOCK_FILE), 'utf8')) as { highWaterMs: number }).highWaterMs;

  it('is written ahead of each reading, once per MARK_AHEAD_MS of readings', async () => {
    const box = machine();
    const clock = homeLabClock(home, { wall: box.wall, monotonic: box.monotonic });
    const t1 = clock();
    expect(t1).toBe(T0);
    expect(await markIn(home)).toBe(T0 + MARK_AHEAD_MS);
    box.pass(MARK_AHEAD_MS - 1);
    expect(clock()).toBeLessThanOrEqual(await markIn(home));
    expect(await markIn(home)).toBe(T0 + MARK_AHEAD_MS);
    box.pass(2);
    const t2 = clock();
    expect(await markIn(home)).toBe(t2 + MARK_AHEAD_MS);
  });

  it('a forward step of the wall clock while it runs is not followed; a restart takes the later of wall and mark', () => {
    const box = machine();
    const clock = homeLabClock(home, { wall: box.wall, monotonic: box.monotonic });
    box.m.wall += HOUR;
    box.pass(1000);
    expect(clock()).toBe(T0 + 1000);
    box.m.mono = 0;
    expect(homeLabClock(home, { wall: box.wall, monotonic: box.monotonic })()).toBe(T0 + HOUR + 1000);
  });

  it('is never lowered by a writer whose clock is behind one that wrote a later mark (red team: the CLI at +25 h while the service was stopped)', async () => {
    const box = machine();
    const security = homeLabClock(home, { wall: box.wall, monotonic: box.monotonic });
    security();
    // Another writer, its wall clock 25 h ahead, leaves its mark.
    const cli = homeLabClock(home, { wall: () => box.wall() + 25 * HOUR, monotonic: box.monotonic });
    const late = cli();
    expect(await markIn(home)).toBe(late + MARK_AHEAD_MS);
    // The service reads on past its own mark: it writes, but never below the other's.
    box.pass(MARK_AHEAD_MS + 1);
    security();
    expect(await markIn(home)).toBe(late + MARK_AHEAD_MS);
    // So its next start begins after every time the other handed out.
    box.m.mono = 0;
    expect(homeLabClock(home, { wall: box.wall, monotonic: box.monotonic })()).toBeGreaterThan(late);
  });

  it('that is not one: starts from the wall clock and says so', async () => {
    await writeFile(join(home, LAB_CLOCK_FILE), 'not json');
    const lines: string[] = [];
    const box = machine();
    expect(homeLabClock(home, { ...box, log: (l) => lines.push(l) })()).toBe(T0);
    expect(lines.join('\n')).toMatch(/is not a high-water mark; starting from the wall clock/);
  });

  it('that cannot be written: the reading is handed out, the log says why', async () => {
    await writeFile(join(home, 'a-file'), '');
    const notAFolder = join(home, 'a-file', 'home');
    const lines: string[] = [];
    const box = machine();
    expect(homeLabClock(notAFolder, { ...box, log: (l) => lines.push(l) })()).toBe(T0);
    expect(lines.join('\n')).toMatch(/cannot write its high-water mark .*a-file.*ENOTDIR/);
  });

  it('with no home yet (the first `user add`): nothing to be ahead of, nothing said', () => {
    const lines: string[] = [];
    const box = machine();
    expect(homeLabClock(join(home, 'not-made'), { ...box, log: (l) => lines.push(l) })()).toBe(T0);
    expect(lines).toEqual([]);
  });

  it("is the clock of the CLI's writes while the lab is down: a revocation after a step back is after the tickets", async () => {
    const box = machine();
    const security = homeLabClock(home, { wall: box.wall, monotonic: box.monotonic });
    box.pass(30_000);
    const iat = Math.floor(security() / 1000);
    // The lab taken down, the wall clock stepped back an hour, `user revoke` run with the lab down.
    box.m.wall -= HOUR;
    box.m.mono = 0;
    const store = openLabStore(home, {
      now: homeLabClockAtFirstUse(home, { wall: box.wall, monotonic: box.monotonic }),
    });
    await addUser(store, { name: 'bob', role: 'analyst', password: 'bob-password' });
    const { notBefore } = await revokeUserIn(store, 'bob', 'cli');
    expect(notBefore).toBeGreaterThan(iat);
  });
});

describe('a security service restarted within its running lab (red team A7: a crash during a forward blip)', () => {
  let home: string;
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'tms-lab-clock-run-'));
  });
  afterEach(async () => {
    await rm(home, { recursive: true, force: true });
  });

  /** one machine: a wall clock, this boot's monotonic clock, and each process's own monotonic clock */
  function host() {
    const m = { wall: T0, machine: 50_000, process: 1000, boot: 'boot-1' };
    const log: string[] = [];
    const start = (labId: string) =>
      homeLabClock(home, {
        wall: () => m.wall,
        monotonic: () => m.process,
        machineMonotonic: () => m.machine,
        bootId: () => m.boot,
        run: { labId },
        log: (line) => log.push(line),
      });
    return {
      m,
      log,
      start,
      pass(ms: number) {
        m.wall += ms;
        m.machine += ms;
        m.process += ms;
      },
    };
  }

  it('keeps the lab time when restarted during a +2 h step of the wall clock: tickets of the moment stay valid', () => {
    const h = host();
    const first = h.start('lab-a');
    h.pass(60_000);
    const issuedAt = first();
    expect(issuedAt).toBe(T0 + 60_000);
    // The wall clock jumps 2 h ahead, the service crashes and the watchman starts it again 1 s later.
    h.m.wall += 2 * HOUR;
    h.pass(1000);
    h.m.process = 0;
    const restarted = h.start('lab-a');
    const t = restarted();
    expect(t).toBeGreaterThanOrEqual(issuedAt + 1000);
    expect(t).toBeLessThanOrEqual(issuedAt + MARK_AHEAD_MS + 1000);
    // A ticket issued before the crash, for 15 minutes, is judged on that time: still valid.
    const clock = new LabClock(() => h.m.process);
    clock.adopt(t);
    expect(codeOf(() => partVerifier(clock).verify(ticketAt(Math.floor(issuedAt / 1000))))).toBe('OK');
    expect(h.log.join('\n')).toMatch(
      /restarted in lab lab-a: keeping the lab's time, 7\d{3} s from the wall clock's/,
    );
  });

  it('still never starts behind a time it handed out (the mark), restarted after a step back', () => {
    const h = host();
    const first = h.start('lab-a');
    h.pass(30_000);
    const last = first();
    h.m.wall -= HOUR;
    h.m.process = 0;
    expect(h.start('lab-a')()).toBeGreaterThan(last);
  });

  it('takes the wall clock again for a new lab (lab up), as before', () => {
    const h = host();
    h.start('lab-a')();
    h.pass(10_000);
    h.m.wall += 2 * HOUR;
    h.m.process = 0;
    expect(h.start('lab-b')()).toBe(T0 + 10_000 + 2 * HOUR);
  });

  it('takes the wall clock again after a reboot of the machine, the same lab', () => {
    const h2 = host();
    h2.start('lab-c')();
    h2.pass(10_000);
    h2.m.wall += HOUR;
    h2.m.boot = 'boot-2';
    h2.m.machine = 3000;
    h2.m.process = 0;
    expect(h2.start('lab-c')()).toBe(T0 + 10_000 + HOUR);
  });

  it("is the watchman's clock for renewals: the running lab's time through a step of its wall, never written", async () => {
    const h = host();
    const service = h.start('lab-a');
    h.pass(20_000);
    const labNow = service();
    const before = await readFile(join(home, LAB_CLOCK_FILE), 'utf8');
    const opts = { wall: () => h.m.wall, machineMonotonic: () => h.m.machine, bootId: () => h.m.boot };
    const watchman = runningLabTime(home, 'lab-a', opts);
    expect(watchman()).toBe(labNow);
    // the watchman's wall steps back an hour: its renewals stay due on the lab's time
    h.m.wall -= HOUR;
    h.pass(5000);
    expect(watchman()).toBe(labNow + 5000);
    expect(await readFile(join(home, LAB_CLOCK_FILE), 'utf8')).toBe(before);
    // another lab's anchor, or another boot: the wall clock, as before there was an anchor
    expect(runningLabTime(home, 'lab-b', opts)()).toBe(h.m.wall);
    h.m.boot = 'boot-2';
    expect(runningLabTime(home, 'lab-a', opts)()).toBe(h.m.wall);
  });

  it('keeps the anchor when the CLI writes the mark with the lab down between', async () => {
    const h = host();
    h.start('lab-a')();
    h.pass(5000);
    homeLabClockAtFirstUse(home, { wall: () => h.m.wall + 30_000, monotonic: () => 0 })();
    const saved = JSON.parse(await readFile(join(home, LAB_CLOCK_FILE), 'utf8')) as {
      run?: { labId: string };
    };
    expect(saved.run?.labId).toBe('lab-a');
  });
});

describe('the lab time from the security service', () => {
  let home: string;
  let app: FastifyInstance;
  let url: string;
  let answer: Record<string, unknown>;
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'tms-lab-clock-'));
    await mkdir(join(home, 'home'));
    const store = openLabStore(join(home, 'home'), { now: () => new Date(T0) });
    const book = new RevocationBook(store);
    await book.load();
    app = createHttpApp();
    answer = {
      issuer: ISSUER,
      audience: 'trusted-ms://lab-clock',
      keys: [{ kid: 'k1', alg: 'EdDSA', publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }) }],
      labTimeMs: T0,
    };
    app.get('/v1/keys', async () => answer);
    app.register(revocationFeedRoutes, { store, revocations: book, now: () => T0 + HOUR });
    await app.listen({ host: '127.0.0.1', port: 0 });
    url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  });
  afterEach(async () => {
    await app.close();
    await rm(home, { recursive: true, force: true });
  });

  it('with its keys: a part judges tickets on it, whatever its own wall clock says', async () => {
    const clock = new LabClock();
    const verifier = await new SecurityClient(url).ticketVerifier('paper', clock);
    // The answer's time, taken half-way through a local round trip.
    expect(Math.abs(clock.now() - T0)).toBeLessThan(1000);
    const iat = Math.floor(T0 / 1000);
    expect(codeOf(() => verifier.verify(ticketAt(iat)))).toBe('OK');
    expect(codeOf(() => verifier.verify(ticketAt(iat + IAT_LEEWAY_SECONDS)))).toBe('OK');
    expect(codeOf(() => verifier.verify(ticketAt(iat + 3)))).toBe('TICKET_INVALID');
    expect(codeOf(() => verifier.verify(ticketAt(iat - 3600)))).toBe('TICKET_EXPIRED');
  });

  it('with its keys, missing: the part refuses to start rather than judge on its own wall clock', async () => {
    delete answer.labTimeMs;
    await expect(new SecurityClient(url).ticketVerifier('paper', new LabClock())).rejects.toMatchObject({
      code: 'SERVICE_UNAVAILABLE',
      message: expect.stringMatching(/lab time/),
    });
  });

  it('with every answer of the revocation feed: the part moves forward to it', async () => {
    const clock = new LabClock();
    clock.adopt(T0);
    const feed = new RevocationFeed(url, { part: 'gateway', clock });
    await feed.start();
    try {
      expect(clock.now()).toBeGreaterThanOrEqual(T0 + HOUR);
      expect(clock.now()).toBeLessThan(T0 + HOUR + 60_000);
    } finally {
      await feed.stop();
    }
  });
});
