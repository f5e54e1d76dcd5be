import type { ClusterLab } from './cluster-plan.js';
import { NAMESPACE } from './k8s/labels.js';
import { secretsOf } from './part-files.js';

/**
 * SECRETS.md of an export: every Secret the parts read, its keys, who reads it and how to make
 * it. The export holds no key material; the files come from a lab home that `trusted-ms lab up`
 * made (the same posture), where each is a 0600 file.
 */
export function secretsGuide(lab: ClusterLab, format: 'k8s' | 'compose'): string {
  const secrets = secretsOf(lab);
  const lines = [
    '# Secrets this lab reads',
    '',
    'Nothing here holds key material: the manifests name each Secret and its keys. Make the files',
    `with \`trusted-ms lab up --posture ${lab.posture}${lab.without.map((w) => ` --without ${w}`).join('')}\``,
    'in a lab home of your own (`--home DIR`), then `trusted-ms lab down`; each file below is in that',
    'home (`HOME_DIR=DIR`). Fresh secrets at each `lab up`: take them all from the same one.',
    '',
  ];
  if (secrets.length === 0) lines.push('This posture reads no secret.', '');
  for (const { secret, readBy } of secrets) {
    const what = `${secret.what.charAt(0).toUpperCase()}${secret.what.slice(1)}`;
    lines.push(`## ${secret.name}`, '', `${what}; read by ${readBy.join(', ')}.`, '');
    for (const [key, from] of Object.entries(secret.keys))
      lines.push(`- \`${key}\` from \`$HOME_DIR/${from}\``);
    lines.push('', '```sh');
    if (format === 'k8s') {
      const fromFiles = Object.entries(secret.keys)
        .map(([key, from]) => `--from-file=${key}="$HOME_DIR/${from}"`)
        .join(' ');
      lines.push(`kubectl -n ${NAMESPACE} create secret generic ${secret.name} ${fromFiles}`);
    } else {
      lines.push(`mkdir -p secrets/${secret.name}`);
      for (const [key, from] of Object.entries(secret.keys))
        lines.push(
          `sudo install -m 0400 -o 65532 -g 65532 "$HOME_DIR/${from}" secrets/${secret.name}/${key}`,
        );
    }
    lines.push('```', '');
  }
  if (lab.defences.links === 'mtls' || lab.defences.attestation === 'measured') {
    lines.push(
      '## What a cluster does not do here',
      '',
      'In this posture the lab measures each service from outside and issues its identity only after a',
      'trusted measurement; the watchman re-measures and renews them. Both run beside the runtime on a',
      'lab host and are not exported: on a cluster, the identity Secrets above would have to be kept',
      'fresh by an attestor of the cluster (what SPIRE does), which this export does not provide.',
      'Identities taken from a lab home last what `lab up --identity-ttl` gave them (300 s by default).',
      '',
    );
  }
  return `${lines.join('\n')}`;
}
