import { Flags } from '@oclif/core';
import { BaseCommand } from '../../src/command-support/base-command.js';
import { POSTURES, parsePosture } from '../../src/defences/posture.js';
import { ABLATION_NAMES, parseAblations } from '../../src/defences/presets.js';
import {
  EXPORT_FORMATS,
  type LabExportResult,
  labExport,
  parseExportFormat,
} from '../../src/export/lab-export.js';

export type LabExportCommandResult = LabExportResult;

export default class LabExport extends BaseCommand {
  static override summary =
    'Write the lab as Kubernetes manifests or a docker compose file, for an engine that runs elsewhere.';
  static override description =
    `The same lab \`lab up\` would start for the posture and size (its plan, the topology's call edges, the posture's defences): with --format k8s a Namespace, a Deployment, Service, ConfigMap and PodDisruptionBudget per part, NetworkPolicies that deny by default and allow exactly the lab's traffic, memory requests from the measured figures; with --format compose one compose.yaml (gateway alone published, on 127.0.0.1). Both come with the images' build folders and their commands (images/build.sh; nothing is pulled but the base image) and SECRETS.md, which names every Secret the parts read and how to make it: no key material is written. Nothing is run here: the output is validated by the tests, not deployed. Known formats: ${EXPORT_FORMATS.join(', ')}.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> --format k8s --out ./k8s',
    '<%= config.bin %> <%= command.id %> --format k8s --out ./k8s --posture paper --services 5 --replicas 3',
    '<%= config.bin %> <%= command.id %> --format compose --out ./compose --force --json',
  ];
  static override flags = {
    format: Flags.string({ description: `what to write: ${EXPORT_FORMATS.join(' or ')}`, required: true }),
    out: Flags.string({
      description: 'the folder to write into (created when missing; must be empty)',
      required: true,
    }),
    force: Flags.boolean({
      description: 'write into a folder that is not empty, over the files of the same names',
    }),
    posture: Flags.string({ description: 'security posture', options: [...POSTURES], default: 'trusted' }),
    without: Flags.string({
      description: "leave one of the posture's defences out (repeatable), as `lab up --without`",
      options: [...ABLATION_NAMES],
      multiple: true,
    }),
    services: Flags.integer({
      description: 'how many of the 20 services (their callees come too)',
      min: 1,
      max: 20,
      default: 20,
    }),
    replicas: Flags.integer({ description: 'replicas of each sample service', min: 1, max: 50, default: 1 }),
  };

  async run(): Promise<LabExportCommandResult> {
    const { flags } = await this.parse(LabExport);
    const posture = parsePosture(flags.posture);
    const result = await labExport({
      format: parseExportFormat(flags.format),
      out: flags.out,
      force: flags.force,
      posture,
      without: parseAblations(flags.without ?? [], posture),
      services: flags.services,
      replicas: flags.replicas,
    });
    const kinds = Object.entries(result.objects ?? {}).map(([kind, n]) => `${n} ${kind}`);
    this.log(
      `Wrote ${result.files.length} files to ${result.dir} (${result.format}, ${result.posture}, ${result.services} services × ${result.replicas}).`,
    );
    if (kinds.length > 0) this.log(`Objects: ${kinds.join(', ')}.`);
    this.log(
      `Next: build the ${result.images.length} images (sh images/build.sh), create the secrets SECRETS.md names, then ${result.format === 'k8s' ? `kubectl apply -f ${result.dir}` : `docker compose -f ${result.dir}/compose.yaml up -d`}.`,
    );
    return result;
  }
}
