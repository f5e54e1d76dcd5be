import { Args } from '@oclif/core';
import { findScenario } from '../../src/attacks/registry.js';
import type { Verdict } from '../../src/attacks/types.js';
import { BaseCommand } from '../../src/command-support/base-command.js';
import type { Posture } from '../../src/defences/posture.js';

export interface AttackShowResult {
  id: string;
  title: string;
  paperAttack: number;
  technique: string;
  description: string;
  evidence: string;
  expected: Record<Posture, Verdict>;
}

export default class AttackShow extends BaseCommand {
  static override summary =
    'Show what a scenario does, the evidence it looks for, and the outcome expected per posture.';
  static override examples = [
    '<%= config.bin %> <%= command.id %> masquerade.stolen-ticket',
    '<%= config.bin %> <%= command.id %> privilege.forged-role --json',
  ];
  static override args = {
    id: Args.string({ description: 'scenario id, see `attack list`', required: true }),
  };

  async run(): Promise<AttackShowResult> {
    const { args } = await this.parse(AttackShow);
    const s = findScenario(args.id);
    this.log(`${s.id}: ${s.title}`);
    this.log(`paper attack ${s.paperAttack}, MITRE ATT&CK ${s.technique}\n`);
    this.log(`${s.description}\n`);
    this.log(`Evidence: ${s.evidence}\n`);
    this.log(
      `Expected: none ${s.expected.none}, paper ${s.expected.paper}, trusted ${s.expected.trusted}${
        s.expectedIn
          ? ' (in the labs `attack simulate` starts; it depends on the lab: see the description)'
          : ''
      }`,
    );
    const { id, title, paperAttack, technique, description, evidence, expected } = s;
    return { id, title, paperAttack, technique, description, evidence, expected };
  }
}
