import type { ServiceKind } from '../../pki/spiffe.js';

/**
 * Who may call what on the security service's control-plane listener (links:mtls), by the kind in
 * the caller's SPIFFE id: every part reads the feeds it follows; only the gateway relays logins;
 * the watchman only proves that the service is there. The admin API is served here to the `admin`
 * kind only (the CLI and the watchman, src/kernel/admin-channel.ts), still behind the lab token: the
 * token then never leaves the host before the server proved to be the security service.
 */
const POLICY: Readonly<Record<string, readonly ServiceKind[]>> = Object.freeze({
  'GET /healthz': ['gateway', 'service', 'supervisor', 'admin'],
  'GET /v1/keys': ['gateway', 'service'],
  'GET /v1/services': ['gateway', 'service', 'admin'],
  'GET /v1/revocations': ['gateway', 'service'],
  'POST /v1/auth/challenge': ['gateway'],
  'POST /v1/auth/verify': ['gateway'],
});

/** The routes the control-plane listener serves (`METHOD /path`). */
export const CONTROL_PLANE_ROUTES = Object.keys(POLICY);

/** Every admin route (`METHOD /v1/admin/...`), whatever its method. */
export function isAdminRoute(route: string): boolean {
  return /^[A-Z]+ \/v1\/admin\//.test(route);
}

/** Whether a caller of this kind may call `route` (`METHOD /path` as registered), else refused. */
export function mayCallControlPlane(route: string, kind: ServiceKind): boolean {
  if (isAdminRoute(route)) return kind === 'admin';
  return Object.hasOwn(POLICY, route) && (POLICY[route] as readonly ServiceKind[]).includes(kind);
}
