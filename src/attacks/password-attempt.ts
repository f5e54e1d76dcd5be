import { request } from 'undici';
import type { Defences } from '../defences/presets.js';
import type { LabState } from '../kernel/lab-state.js';
import { newExchangeKeyPair } from '../protocol/session-key.js';
import { assertLabAddress } from './http.js';
import type { ScenarioContext } from './types.js';

/** What the lab answered one password try, and how long it took (ms, measured by the client). */
export interface PasswordAnswer {
  status: number | undefined;
  code: string;
  message: string;
  ms: number;
}

/**
 * One password try, the first step of a login in the lab's scheme. Through the gateway (`at`
 * 'gateway', as users log in): HTTP basic (`GET /auth/basic`), or the password for a challenge
 * (`POST /v1/auth/challenge`; login:challenge also sends a fresh X25519 key as a real client does).
 * Straight at the security service's address (`at` 'security', past the gateway): the step the
 * gateway would relay there, the challenge, or with HTTP basic the gateway's own password check
 * (`POST /v1/internal/password`).
 */
export async function tryPassword(
  ctx: Pick<ScenarioContext, 'lab' | 'timeoutMs'> & { defences: Pick<Defences, 'login'> },
  user: string,
  password: string,
  dispatcher: import('undici').Dispatcher,
  at: 'gateway' | 'security' = 'gateway',
): Promise<PasswordAnswer> {
  const lab: LabState = ctx.lab;
  const basic = ctx.defences.login === 'basic' && at === 'gateway';
  const url = assertLabAddress(passwordStepUrl(lab, ctx.defences, at), lab);
  const body = basic
    ? undefined
    : JSON.stringify({
        user,
        password,
        ...(ctx.defences.login === 'challenge' ? { clientKey: newExchangeKeyPair().publicKeyRaw } : {}),
      });
  const t0 = performance.now();
  try {
    const res = await request(url, {
      method: basic ? 'GET' : 'POST',
      headers: basic
        ? { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` }
        : { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body }),
      headersTimeout: ctx.timeoutMs,
      bodyTimeout: ctx.timeoutMs,
      dispatcher,
    });
    const text = await res.body.text();
    const ms = performance.now() - t0;
    const parsed = parse(text);
    return {
      status: res.statusCode,
      code: parsed.code ?? `HTTP_${res.statusCode}`,
      message: parsed.message ?? '',
      ms,
    };
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    return {
      status: undefined,
      code: typeof code === 'string' ? code : 'NO_ANSWER',
      message: '',
      ms: performance.now() - t0,
    };
  }
}

/** Where `tryPassword` sends its try. */
export function passwordStepUrl(
  lab: Pick<LabState, 'gatewayUrl' | 'securityUrl'>,
  defences: Pick<Defences, 'login'>,
  at: 'gateway' | 'security',
): string {
  const basic = defences.login === 'basic';
  if (at === 'security') return `${lab.securityUrl}${basic ? '/v1/internal/password' : '/v1/auth/challenge'}`;
  return `${lab.gatewayUrl}${basic ? '/auth/basic' : '/v1/auth/challenge'}`;
}

function parse(text: string): { code?: string; message?: string } {
  try {
    const o = JSON.parse(text) as { code?: unknown; message?: unknown } | null;
    return {
      ...(typeof o?.code === 'string' ? { code: o.code.slice(0, 64) } : {}),
      ...(typeof o?.message === 'string' ? { message: o.message.slice(0, 160) } : {}),
    };
  } catch {
    return {};
  }
}
