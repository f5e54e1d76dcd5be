import { readFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { Client } from 'undici';
import { login } from '../../client/login.js';
import { edgeConnectFor } from '../../kernel/edge-client.js';
import { SERVER_LIMITS } from '../../services/http.js';
import { byDefences, type Scenario, type Verdict } from '../types.js';

/** The attacker's address on a process lab: one of its own, not the victim's 127.0.0.1. */
const SOURCE = '127.0.0.3';
/** More than the gateway's whole socket cap, so that with no share per address nothing is left. */
const SOCKETS = SERVER_LIMITS.maxConnections + 100;
/** Sockets being opened at once (the kernel's accept queue is 511 deep by default). */
const OPENING_AT_ONCE = 256;
/** How long the gateway may take to take each batch of the attacker's sockets from its listen queue. */
const SETTLE_MS = 15_000;
/** The victim's fresh logins while the attacker holds its sockets. */
const VICTIM_LOGINS = 5;
/**
 * The attacker opens again each socket the gateway closed after holding it (at most this many per
 * REFILL_EVERY_MS, REFILL_MAX in all: bounded traffic), as a real attacker's loop would: Node
 * closes a socket that has not sent its headers within 10 s (SERVER_LIMITS.headersTimeoutMs,
 * checked every second) in every posture, so on a busy machine the first of 4,196 sockets were
 * gone in a batch of 1,300-1,800 before or while the victim tried, and the victim got in (the
 * verdict flipped in about one run in four). A socket closed within HELD_MS of its connect was
 * refused at accept (a cap at work): not opened again.
 */
const REFILL_AT_ONCE = 512;
const REFILL_EVERY_MS = 25;
const REFILL_MAX = 4 * SOCKETS;
const HELD_MS = 1000;

interface Scratch {
  sockets?: Socket[];
  stopRefill?: () => void;
}

/**
 * One address opens more sockets than the gateway accepts at all and never sends a byte on them
 * (issue 15: 4,100 idle sockets made the gateway reset every client for the 60 s a silent socket
 * was kept). Judged by whether the victim, from another address, can still connect and log in: a
 * count, not a speed, so a busy machine does not decide it.
 */
export const connectionExhaustion: Scenario = {
  id: 'dos.connection-exhaustion',
  title: "Hold every one of the gateway's sockets from one address, saying nothing",
  paperAttack: 3,
  technique: 'T1499.002',
  description: `From ${SOURCE} the attacker opens ${SOCKETS} TCP connections to the gateway (${SERVER_LIMITS.maxConnections} is all it accepts from everyone) and sends nothing on them; while it holds them, the victim logs in ${VICTIM_LOGINS} times from 127.0.0.1, each on a new connection. Node closes a socket silent for ${SERVER_LIMITS.headersTimeoutMs / 1000} s, and the attacker opens again each one the gateway closes after holding it. Without limits the cap is for all addresses together, so the attacker takes every socket and the victim's connections are reset. With limits:on an address may hold 512 of the gateway's sockets and a socket that sends nothing for 5 s is closed (src/services/connection-guard.ts): the victim gets in.`,
  evidence:
    "Succeeded when any of the victim's fresh logins fails at the connection (reset, closed, refused) and the others succeed; blocked when they all succeed and the gateway closed most of the attacker's sockets (it held at most half the gateway's cap: a defence at work). The victim comes only once the gateway has taken every socket the attacker opened (no more than its cap still open, waited for up to 10 s); inconclusive, and run once more, when it had not, or when neither verdict holds. Counts, not speeds.",
  expected: byDefences((d) => (d.limits === 'on' ? 'blocked' : 'succeeded')),
  onlyOn: {
    runtimes: ['process'],
    why: "the attacker's sockets must come from an address of its own (127.0.0.3 here); on Docker every host client reaches the gateway through the engine's port relay at one address, and an attacker container holding sockets on the edge network is not built yet",
  },

  async detonate(ctx) {
    const scratch = ctx.scratch as Scratch;
    const gateway = new URL(ctx.lab.gatewayUrl);
    const port = Number(gateway.port);
    const sockets: Socket[] = [];
    scratch.sockets = sockets;
    let opened = 0;
    let failedToOpen = 0;
    /** sockets the gateway let go after holding them, not opened again yet */
    let toReplace = 0;
    const openOne = () =>
      new Promise<void>((resolve) => {
        const s = connect({ host: gateway.hostname, port, localAddress: SOURCE });
        sockets.push(s);
        const timer = setTimeout(() => {
          failedToOpen += 1;
          s.destroy();
          resolve();
        }, ctx.timeoutMs);
        s.once('connect', () => {
          clearTimeout(timer);
          opened += 1;
          const connectedAt = performance.now();
          s.once('end', () => {
            if (performance.now() - connectedAt >= HELD_MS) toReplace += 1;
          });
          resolve();
        });
        s.once('error', () => {
          clearTimeout(timer);
          failedToOpen += 1;
          resolve();
        });
        // destroyed before it connected (the revert): its timer must not hold the process
        s.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
        // A reset from the gateway is its answer to this attack, not an error of the scenario.
        s.on('error', () => undefined);
        // Read (nothing comes), so that a close by the gateway is seen: a paused socket never
        // notices the gateway's FIN, and counted it as held.
        s.on('end', () => s.destroy());
        s.resume();
      });
    let refilled = 0;
    let refilling = true;
    scratch.stopRefill = () => {
      refilling = false;
    };
    const refill = (async () => {
      while (refilling && refilled < REFILL_MAX) {
        const n = Math.min(toReplace, REFILL_AT_ONCE, REFILL_MAX - refilled);
        if (n > 0) {
          toReplace -= n;
          refilled += n;
          for (let i = 0; i < n; i++) void openOne();
        }
        await new Promise((r) => setTimeout(r, REFILL_EVERY_MS));
      }
    })();
    for (let i = 0; i < SOCKETS; i += OPENING_AT_ONCE) {
      await Promise.all(Array.from({ length: Math.min(OPENING_AT_ONCE, SOCKETS - i) }, openOne));
      // Paced by the gateway's own listen queue: a socket the client sees as connected may wait
      // there (or, past the queue's 511, in a handshake the kernel finishes seconds later), and the
      // victim could slip in before the gateway has taken them all (seen on a busy machine).
      await queueDrained(port, SETTLE_MS);
    }
    const held = () => sockets.filter((s) => !s.destroyed && !s.readableEnded).length;
    const settleStart = performance.now();
    const settled = await queueDrained(port, SETTLE_MS);
    // the gateway closing what it does not keep: a moment after it took them
    await new Promise((r) => setTimeout(r, 500));
    const settledMs = Math.round(performance.now() - settleStart);
    const heldBefore = held();

    const edgeTls = edgeConnectFor(ctx.lab);
    let victimOk = 0;
    let victimRefused = 0;
    let victimOther = 0;
    for (let i = 0; i < VICTIM_LOGINS; i++) {
      // A new connection for each login: one kept from before the attack would say nothing.
      const fresh = new Client(ctx.lab.gatewayUrl, {
        pipelining: 0,
        // edge:tls: the victim's client checks the gateway against the lab CA, as every client does
        ...(edgeTls === undefined ? {} : { connect: edgeTls }),
        connectTimeout: ctx.timeoutMs,
        headersTimeout: ctx.timeoutMs,
        bodyTimeout: ctx.timeoutMs,
      });
      try {
        await login(ctx.lab, ctx.victim.name, ctx.victim.password, ctx.victim.privateKey, fresh);
        victimOk += 1;
        ctx.evidence.attempts.push({
          action: `the victim logs in from 127.0.0.1 on a new connection (${i + 1} of ${VICTIM_LOGINS})`,
          target: `POST ${ctx.lab.gatewayUrl}/v1/login`,
          status: 200,
          gotData: false,
          note: "the victim's own login",
        });
      } catch (err) {
        const code = codeOf(err);
        const atConnection = CONNECTION_LOST.test(`${code} ${(err as Error).message}`);
        if (atConnection) victimRefused += 1;
        else victimOther += 1;
        ctx.evidence.attempts.push({
          action: `the victim logs in from 127.0.0.1 on a new connection (${i + 1} of ${VICTIM_LOGINS})`,
          target: `POST ${ctx.lab.gatewayUrl}/v1/login`,
          code,
          // The attacker's aim: the victim kept out.
          gotData: atConnection,
          note: (err as Error).message.slice(0, 160),
        });
      } finally {
        await fresh.destroy().catch(() => undefined);
      }
    }
    scratch.stopRefill();
    await refill;
    const heldAfter = held();
    ctx.evidence.measurements = {
      attackerSockets: SOCKETS,
      attackerOpened: opened,
      attackerFailedToOpen: failedToOpen,
      attackerHeldBeforeVictim: heldBefore,
      attackerSettledMs: settledMs,
      gatewayQueueDrained: settled ? 1 : 0,
      attackerHeldAtEnd: heldAfter,
      attackerRefilled: refilled,
      gatewaySocketCap: SERVER_LIMITS.maxConnections,
      victimLoginsOk: victimOk,
      victimLoginsRefusedAtConnection: victimRefused,
      victimLoginsFailedOtherwise: victimOther,
    };
  },

  judge(ctx): Verdict {
    const m = ctx.evidence.measurements ?? {};
    const ok = m.victimLoginsOk ?? 0;
    const refused = m.victimLoginsRefusedAtConnection ?? 0;
    const cap = m.gatewaySocketCap ?? 0;
    const heldBefore = m.attackerHeldBeforeVictim ?? 0;
    if (m.gatewayQueueDrained !== 1) {
      ctx.evidence.inconclusive = `the gateway had not taken the attacker's sockets from its listen queue within ${SETTLE_MS / 1000} s (${heldBefore} held): too busy to judge`;
      return 'inconclusive';
    }
    // Kept out at the connection at least once: denied (a defence gives the victim its share, so
    // with one at work no login fails at the connection; a busy gateway is slow, not refusing).
    if (refused > 0 && refused + ok === VICTIM_LOGINS) return 'succeeded';
    // Blocked only with a defence seen at work: the gateway closed most of the attacker's sockets.
    if (ok === VICTIM_LOGINS && (m.attackerOpened ?? 0) > cap && heldBefore <= cap / 2) return 'blocked';
    ctx.evidence.inconclusive = `the victim's logins: ${ok} in, ${refused} refused at the connection, ${m.victimLoginsFailedOtherwise ?? 0} failed otherwise, with the attacker holding ${heldBefore} sockets (the gateway's cap: ${cap})`;
    return 'inconclusive';
  },

  async revert(ctx) {
    const scratch = ctx.scratch as Scratch;
    scratch.stopRefill?.();
    for (const s of scratch.sockets ?? []) s.destroy();
    scratch.sockets = undefined;
    // Let the gateway see them go before the next scenario connects.
    await new Promise((r) => setTimeout(r, 500));
  },
};

/**
 * Until the gateway's listen queue on 127.0.0.1:`port` is empty and no handshake to it is pending
 * (/proc/net/tcp: the listening socket's rx_queue is its accept queue; SYN_RECV entries are
 * handshakes the kernel has not finished), or `withinMs` pass. Whether it drained.
 */
async function queueDrained(port: number, withinMs: number): Promise<boolean> {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const deadline = performance.now() + withinMs;
  for (;;) {
    const text = await readFile('/proc/net/tcp', 'utf8').catch(() => '');
    let waiting = 0;
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[1]?.endsWith(`:${hexPort}`) !== true) continue;
      if (f[3] === '0A') waiting += Number.parseInt(f[4]?.split(':')[1] ?? '0', 16);
      else if (f[3] === '03') waiting += 1;
    }
    if (waiting === 0) return true;
    if (performance.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** What a connection torn down under a request looks like from undici and the client (never an HTTP answer). */
const CONNECTION_LOST =
  /ECONNRESET|EPIPE|ECONNREFUSED|UND_ERR_SOCKET|UND_ERR_CLOSED|other side closed|socket hang up|cannot reach/;

function codeOf(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: unknown } };
  if (typeof e.code === 'string') return e.code;
  if (typeof e.cause?.code === 'string') return e.cause.code;
  return 'ERROR';
}
