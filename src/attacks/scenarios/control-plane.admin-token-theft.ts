import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Agent } from 'undici';
import { MutualTls } from '../../defences/links.js';
import { isTrustedMsError } from '../../errors.js';
import type { ServicePartConfig } from '../../kernel/part-config.js';
import { homeOfLab } from '../../lab/restart.js';
import { readIdentity } from '../../pki/identity-files.js';
import { openUserAdmin } from '../../users/admin.js';
import { attempt } from '../http.js';
import { servicePart } from '../plant.js';
import { TARGET } from '../target.js';
import { judgeByData, type Scenario } from '../types.js';

interface Theft {
  /** the admin user the attacker tries to create (removed at revert if it was) */
  user: string;
}

/**
 * Issue 13, the paper break: every service held the lab token, and with one service's copy an
 * attacker created an admin user. Here a compromised service uses whatever it is handed.
 */
export const adminTokenTheft: Scenario = {
  id: 'control-plane.admin-token-theft',
  title: 'A compromised service uses what it holds on the admin routes',
  paperAttack: 5,
  technique: 'T1552.001',
  description:
    "The attacker controls the customers service's process and uses every credential it is handed (the files its part config names, its identity) on the security service's admin routes: it tries to create an admin user and to read the victim's account. In none the service's config names the lab token, the CLI's admin credential, and the service can read it; in paper a service holds only its own credential, which reports its own hash and reads the feeds; in trusted it holds only its certificate, which the control-plane listener accepts for the feeds alone, and admin routes are not served there.",
  evidence:
    "The status of each admin request (succeeded when an admin user was created or the victim's account was read), with which credential it was made.",
  expected: { none: 'succeeded', paper: 'blocked', trusted: 'blocked' },
  onlyOn: {
    runtimes: ['process'],
    why: "the parts of a process lab run as one user, so 'what a service holds' is what its config hands it; on Docker a container holds only its mounts",
  },

  async setup(ctx) {
    const theft: Theft = { user: `stolen-admin-${randomBytes(3).toString('hex')}` };
    ctx.scratch.theft = theft;
  },

  async detonate(ctx) {
    const theft = ctx.scratch.theft as Theft;
    const part = servicePart(ctx, TARGET.service);
    const config = JSON.parse(await readFile(part.configFile, 'utf8')) as ServicePartConfig;
    const held: [string, string][] = [];
    for (const [what, file] of [
      ['lab token', config.labTokenFile],
      ['own credential', config.partCredentialFile],
    ] as const) {
      if (file === undefined) continue;
      const secret = await readFile(file, 'utf8').then(
        (t) => t.trim(),
        () => undefined,
      );
      if (secret) held.push([what, secret]);
    }
    const body = JSON.stringify({
      name: theft.user,
      role: 'admin',
      password: randomBytes(12).toString('hex'),
    });
    for (const [what, secret] of held) {
      const authorization = `Bearer ${secret}`;
      await attempt(ctx, {
        action: `create an admin user with the service's ${what}`,
        url: `${ctx.lab.securityUrl}/v1/admin/users`,
        method: 'POST',
        headers: { authorization },
        body,
        dispatcher: ctx.client,
        marker: theft.user,
      });
      await attempt(ctx, {
        action: `read the victim's account with the service's ${what}`,
        url: `${ctx.lab.securityUrl}/v1/admin/users/${ctx.victim.name}`,
        headers: { authorization },
        dispatcher: ctx.client,
        marker: `"name":"${ctx.victim.name}"`,
      });
    }
    // trusted: its certificate, on the control-plane listener it reaches the feeds on.
    if (config.controlPlaneUrl && config.identityDir && config.caFile) {
      const tls = new MutualTls(
        await readIdentity(config.identityDir),
        await readFile(config.caFile, 'utf8'),
      );
      const dispatcher = new Agent({ connect: tls.connectControlPlane() });
      try {
        await attempt(ctx, {
          action: "create an admin user with the service's certificate on the control plane",
          url: `${config.controlPlaneUrl}/v1/admin/users`,
          method: 'POST',
          body,
          dispatcher,
          marker: theft.user,
        });
      } finally {
        await dispatcher.destroy();
      }
    }
    if (held.length === 0 && !config.controlPlaneUrl) {
      ctx.evidence.attempts.push({
        action: 'look for a credential in what the service is handed',
        target: part.configFile,
        gotData: false,
        note: 'none',
      });
    }
  },

  judge: judgeByData,

  async revert(ctx) {
    const theft = ctx.scratch.theft as Theft | undefined;
    if (theft === undefined) return;
    const admin = await openUserAdmin(homeOfLab(ctx.lab));
    // Not created (the attack was refused) is the usual case: nothing to take out.
    await admin.removeUser(theft.user).catch((err: unknown) => {
      if (!(isTrustedMsError(err) && err.code === 'USER_NOT_FOUND')) throw err;
    });
    ctx.scratch.theft = undefined;
  },
};
