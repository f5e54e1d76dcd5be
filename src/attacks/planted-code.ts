import { plantInCodeFolder, undoPlant, type Variant, victimCall } from './plant.js';
import { sinkEvidence, sinkMark } from './sink.js';
import { TARGET } from './target.js';
import { judgeByData, type Scenario } from './types.js';

/**
 * The lifecycle shared by the scenarios that replace the target service's code with a variant that
 * copies what it serves to the attacker's sink: only the variant (and so what the lab believes about
 * it) differs between them.
 */
export function plantedCodeLifecycle(
  variant: Variant,
): Pick<Scenario, 'setup' | 'detonate' | 'judge' | 'revert'> {
  return {
    async setup(ctx) {
      ctx.scratch.mark = await sinkMark(ctx.lab);
      await plantInCodeFolder(ctx, TARGET.service, variant);
    },

    async detonate(ctx) {
      await victimCall(
        ctx,
        TARGET.service,
        TARGET.path,
        'the victim reads a customer record through the gateway',
      );
      await sinkEvidence(ctx, ctx.scratch.mark as number, TARGET.marker);
    },

    judge: judgeByData,
    revert: undoPlant,
  };
}
