import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { isTrustedMsError, TrustedMsError } from '../../../src/errors.js';
import { provesIdentity } from '../../../src/lab/supervisor/identity-check.js';
import { createLabCa } from '../../../src/pki/ca.js';
import { issueServiceCertificate } from '../../../src/pki/identity.js';
import { clientTlsConnector, serverTlsOptions } from '../../../src/pki/mtls.js';
import { orFailClosed } from '../../../src/services/fail-closed.js';

const LAB = 'ab12cd34';
const servers: Server[] = [];

async function listen(server: Server): Promise<string> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `https://127.0.0.1:${(server.address() as { port: number }).port}`;
}

afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections?.();
    await new Promise((r) => s.close(r));
  }
  vi.restoreAllMocks();
});

describe("the watchman's identity check (a part on its port, or an impostor)", () => {
  it('is proof only for the expected SPIFFE id from the lab CA', async () => {
    const ca = await createLabCa({ labId: LAB });
    const watchman = await issueServiceCertificate(ca, { name: 'supervisor', kind: 'supervisor' });
    const expecting = clientTlsConnector(watchman, ca.certPem, 'security', 'security');
    const serve = (identity: Parameters<typeof serverTlsOptions>[0], caPem = ca.certPem) =>
      listen(createHttpsServer(serverTlsOptions(identity, caPem), (_q, s) => s.end()));

    const real = await serve(await issueServiceCertificate(ca, { name: 'security', kind: 'security' }));
    expect(await provesIdentity(real, expecting)).toBe(true);
    // a plain listener, a lab-CA service named "security", a look-alike from another CA
    const plain = await listen(createHttpServer((_q, s) => s.end()));
    expect(await provesIdentity(plain, expecting)).toBe(false);
    expect(
      await provesIdentity(
        await serve(await issueServiceCertificate(ca, { name: 'security', kind: 'service' })),
        expecting,
      ),
    ).toBe(false);
    const other = await createLabCa({ labId: LAB });
    expect(
      await provesIdentity(
        await serve(
          await issueServiceCertificate(other, { name: 'security', kind: 'security' }),
          other.certPem,
        ),
        expecting,
      ),
    ).toBe(false);
    // nothing listens
    expect(await provesIdentity('https://127.0.0.1:1', expecting)).toBe(false);
  });
});

describe('a part that cannot get what it needs at start', () => {
  it('says why in one line with the code and exits 1 without serving', async () => {
    const exit = vi.spyOn(process, 'exit').mockImplementation((() => {
      throw new Error('exited');
    }) as never);
    const log = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const failing = Promise.reject(new TrustedMsError('CONTROL_PLANE_UNTRUSTED', 'not the security service'));
    const thrown = await orFailClosed('gateway', failing).catch((e: unknown) => e);
    expect(isTrustedMsError(thrown)).toBe(false);
    expect(exit).toHaveBeenCalledWith(1);
    expect(log).toHaveBeenCalledWith(
      'gateway: not starting: CONTROL_PLANE_UNTRUSTED: not the security service',
    );
    await expect(orFailClosed('gateway', Promise.resolve(7))).resolves.toBe(7);
  });
});
