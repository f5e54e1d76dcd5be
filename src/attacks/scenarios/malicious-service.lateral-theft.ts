import { compromiseProcess, servicePart, undoPlant, victimCall } from '../plant.js';
import { sinkEvidence, sinkMark, sinkUrlForParts } from '../sink.js';
import { TARGET } from '../target.js';
import { judgeByData, type Scenario } from '../types.js';

/** The compromised service: one that never calls customers in the topology. */
const COMPROMISED = 'catalog';

/** A compromised catalog service reads the customers database with the credentials passing through it. */
export const lateralTheft: Scenario = {
  id: 'malicious-service.lateral-theft',
  title: "A compromised service calls another service's database directly",
  paperAttack: 5,
  technique: 'T1021',
  description:
    "The catalog service's process is compromised (it runs src/attacks/payloads/lateral-service.ts; its code folder is untouched, so measuring the code cannot see it). When the victim reads the catalog, the implant reuses the credentials of that request (the gateway's identity headers in none, the victim's bearer ticket in paper and trusted) to read a customer record straight from the customers service, which catalog never calls, and sends what it got to the attacker's sink. The paper has nothing between services but the bearer ticket, so customers serves it; in trusted customers accepts only mTLS peers that are its callers in the topology, and catalog is not one. Revert restarts catalog with its own code.",
  evidence:
    "What the implant sent to the attacker's sink (succeeded when the customer record is in it: otherwise it carries the refusal customers answered with).",
  expected: { none: 'succeeded', paper: 'succeeded', trusted: 'blocked' },

  async setup(ctx) {
    ctx.scratch.mark = await sinkMark(ctx.lab);
    const target = servicePart(ctx, TARGET.service);
    await compromiseProcess(ctx, COMPROMISED, 'lateral', {
      sink: sinkUrlForParts(ctx.lab),
      target: { service: TARGET.service, url: target.url, path: TARGET.path },
    });
  },

  async detonate(ctx) {
    await victimCall(
      ctx,
      COMPROMISED,
      '/db/catalog/records',
      'the victim reads the catalog through the gateway',
    );
    await sinkEvidence(ctx, ctx.scratch.mark as number, TARGET.marker, undefined, true);
  },

  judge: judgeByData,
  revert: undoPlant,
};
