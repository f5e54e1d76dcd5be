import { connect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { ATTACKER_ADDRESS, attackerClient } from '../../../src/attacks/http.js';
import { callService } from '../../../src/client/call.js';
import { type EdgeConnectOptions, edgeConnectFor } from '../../../src/kernel/edge-client.js';
import { SERVER_LIMITS } from '../../../src/services/http.js';
import { startLab } from '../../support/lab.js';

const SLOW_SOCKETS = 200;
const FLOOD_IN_FLIGHT = 32;
const FLOOD_MAX_REQUESTS = 50_000;
/**
 * A server checks its header deadline every `connectionsCheckingIntervalMs`: a slow socket is cut
 * at most that long after `headersTimeoutMs`. Twice the interval leaves room for a busy machine.
 */
const CUT_DEADLINE_MS = SERVER_LIMITS.headersTimeoutMs + 2 * SERVER_LIMITS.connectionsCheckingIntervalMs;

interface SlowResult {
  closedByServer: boolean;
  openMs: number;
  answer: string;
}

/**
 * A slowloris client: opens a connection from the attacker's address and sends a request's headers
 * a byte every 250 ms, never ending them. It gives up itself only at the deadline; what matters is
 * whether the server closed it first.
 */
function slowSocket(port: number, deadlineMs: number, tls?: EdgeConnectOptions): Promise<SlowResult> {
  return new Promise((resolve) => {
    // edge:tls: the slow headers come inside TLS, after the handshake, as a slowloris at HTTPS does
    const where = { host: '127.0.0.1', port, localAddress: ATTACKER_ADDRESS };
    const socket = tls ? tlsConnect({ ...tls, ...where }) : connect(where);
    const headers = `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n${'X-Slow: a\r\n'.repeat(200)}`;
    let sent = 0;
    let answer = '';
    let byClient = false;
    const opened = Date.now();
    let trickle: NodeJS.Timeout | undefined;
    socket.on(tls ? 'secureConnect' : 'connect', () => {
      socket.write(headers.slice(0, 40));
      sent = 40;
      trickle = setInterval(() => {
        if (sent < headers.length && socket.writable) socket.write(headers[sent++] as string);
      }, 250);
    });
    socket.on('data', (chunk) => {
      answer += chunk.toString('latin1');
    });
    socket.on('error', () => undefined);
    const giveUp = setTimeout(() => {
      byClient = true;
      socket.destroy();
    }, deadlineMs);
    socket.on('close', () => {
      clearInterval(trickle);
      clearTimeout(giveUp);
      resolve({ closedByServer: !byClient, openMs: Date.now() - opened, answer });
    });
  });
}

/**
 * Slow and flooding clients at the gateway (trusted): 200 slowloris sockets and a request flood,
 * both from the attacker's address, while a user logs in and calls a service from another address.
 * The user is served throughout (every call 200) and the gateway itself cuts every slow socket
 * within its configured header timeout, answering 408 REQUEST_TIMEOUT.
 */
describe('slow and flooding clients', () => {
  it('keeps serving a user while it cuts slowloris sockets and absorbs a flood', async () => {
    await using lab = await startLab('trusted', 3);
    const gatewayUrl = lab.state.gatewayUrl;
    const port = Number(new URL(gatewayUrl).port);

    const tls = edgeConnectFor(lab.state);
    const slow = Promise.all(
      Array.from({ length: SLOW_SOCKETS }, () => slowSocket(port, CUT_DEADLINE_MS, tls)),
    );
    let attacking = true;
    slow.finally(() => {
      attacking = false;
    });

    const flooder = attackerClient(undefined, lab.state);
    let flooded = 0;
    const floodStatuses = new Map<number, number>();
    const flood = Promise.all(
      Array.from({ length: FLOOD_IN_FLIGHT }, async () => {
        while (attacking && flooded < FLOOD_MAX_REQUESTS) {
          flooded += 1;
          const res = await request(`${gatewayUrl}/svc/accounts/db/accounts/records`, {
            dispatcher: flooder,
            headersTimeout: 10_000,
          }).catch(() => undefined);
          if (res === undefined) continue;
          floodStatuses.set(res.statusCode, (floodStatuses.get(res.statusCode) ?? 0) + 1);
          await res.body.dump();
        }
      }),
    );

    // the user: logs in while the attack runs, then calls until the slow sockets are gone
    const latencies: number[] = [];
    const statuses: number[] = [];
    const session = await lab.login('alice');
    while (attacking) {
      const r = await callService(session, { gatewayUrl, service: 'accounts', path: '/db/accounts/records' });
      statuses.push(r.status);
      latencies.push(r.durationMs);
    }
    const slowResults = await slow;
    await flood;
    await flooder.close();

    const sorted = [...latencies].sort((a, b) => a - b);
    const at = (q: number) =>
      (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0).toFixed(1);
    const openMs = slowResults.map((r) => r.openMs).sort((a, b) => a - b);
    console.log(
      `user: ${statuses.length} calls, ${statuses.filter((s) => s === 200).length} ok, latency p50 ${at(0.5)} ms p99 ${at(0.99)} ms max ${at(1)} ms; ` +
        `flood: ${flooded} requests ${JSON.stringify(Object.fromEntries(floodStatuses))}; ` +
        `slow sockets cut after ${openMs[0]}-${openMs[openMs.length - 1]} ms (header timeout ${SERVER_LIMITS.headersTimeoutMs} ms)`,
    );

    expect(statuses.length).toBeGreaterThan(0);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(flooded).toBeGreaterThan(FLOOD_IN_FLIGHT);
    expect(slowResults.filter((r) => !r.closedByServer)).toEqual([]);
    for (const r of slowResults) expect(r.answer).toMatch(/^HTTP\/1\.1 408 .*REQUEST_TIMEOUT/s);
  }, 120_000);
});
