import { randomBytes } from 'node:crypto';
import { access, copyFile, mkdir, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { stringify } from 'yaml';
import type { Posture } from '../defences/posture.js';
import type { Ablation } from '../defences/presets.js';
import { labelOf } from '../defences/presets.js';
import { isTrustedMsError, TrustedMsError } from '../errors.js';
import { type ClusterLab, planClusterLab } from './cluster-plan.js';
import { composeFileOf } from './compose.js';
import { DEFAULT_BASE_IMAGE, imageOf } from './images.js';
import { k8sManifests } from './k8s/manifests.js';
import { prepareOutDir } from './out-dir.js';
import { writableDirsOf } from './part-files.js';
import { secretsGuide } from './secrets-guide.js';

export const EXPORT_FORMATS = ['k8s', 'compose'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export function parseExportFormat(value: string): ExportFormat {
  if ((EXPORT_FORMATS as readonly string[]).includes(value)) return value as ExportFormat;
  throw new TrustedMsError(
    'EXPORT_FORMAT_UNKNOWN',
    `unknown export format ${JSON.stringify(value)}: one of ${EXPORT_FORMATS.join(', ')}`,
    { actions: EXPORT_FORMATS.map((f) => `--format ${f}`) },
  );
}

export interface LabExportOptions {
  format: ExportFormat;
  out: string;
  force?: boolean;
  posture: Posture;
  without?: readonly Ablation[];
  services: number;
  replicas: number;
}

export interface LabExportResult {
  format: ExportFormat;
  dir: string;
  posture: string;
  services: number;
  replicas: number;
  /** every file written, relative to `dir` */
  files: string[];
  /** k8s: how many objects of each kind */
  objects?: Record<string, number>;
  /** the images to build before the lab can run, where from, and the command (images/build.sh) */
  images: { image: string; context: string; build: string }[];
}

/** What a file of the export holds, before it is written. */
type Entry = { text: string } | { copy: string };

/**
 * Writes the lab `lab up` would start for this posture and size as files for another engine:
 * Kubernetes manifests or a compose file, the part configs, the images' build folders, and
 * SECRETS.md naming every secret (never its content).
 */
export async function labExport(opts: LabExportOptions): Promise<LabExportResult> {
  const dir = resolve(opts.out);
  const lab = planClusterLab({
    posture: opts.posture,
    ...(opts.without === undefined ? {} : { without: opts.without }),
    services: opts.services,
    replicas: opts.replicas,
    labId: randomBytes(4).toString('hex'),
  });
  const entries = new Map<string, Entry>();
  const objects: Record<string, number> = {};
  if (opts.format === 'k8s') {
    for (const [file, docs] of Object.entries(k8sManifests(lab))) {
      entries.set(file, { text: docs.map((d) => stringify(d, { lineWidth: 0 })).join('---\n') });
      for (const d of docs) objects[d.kind] = (objects[d.kind] ?? 0) + 1;
    }
  } else {
    const header = `# trusted-ms lab, ${labelOf(lab.posture, lab.without)}: build with \`docker compose build\`, secrets as SECRETS.md says, then \`docker compose up -d\`.\n`;
    entries.set('compose.yaml', { text: header + stringify(composeFileOf(lab), { lineWidth: 0 }) });
    for (const part of lab.parts)
      entries.set(join('configs', basename(part.launch.configFile)), {
        text: `${JSON.stringify(part.config, null, 2)}\n`,
      });
  }
  entries.set('SECRETS.md', { text: secretsGuide(lab, opts.format) });
  const images = imagesOf(lab, entries);
  for (const e of entries.values())
    if ('copy' in e)
      await access(e.copy).catch(() => {
        throw new TrustedMsError('FILE_NOT_FOUND', `the bundle ${e.copy} is missing`, {
          actions: ['build first: npm run build'],
        });
      });

  await prepareOutDir(dir, opts.force === true);
  for (const [file, entry] of entries) {
    const path = join(dir, file);
    try {
      await mkdir(dirname(path), { recursive: true });
      if ('copy' in entry) await copyFile(entry.copy, path);
      else await writeFile(path, entry.text);
    } catch (err) {
      if (isTrustedMsError(err)) throw err;
      throw new TrustedMsError('EXPORT_DIR_NOT_WRITABLE', `cannot write ${path}`, { cause: err });
    }
  }
  return {
    format: opts.format,
    dir,
    posture: labelOf(lab.posture, lab.without),
    services: lab.services.length,
    replicas: opts.replicas,
    files: [...entries.keys()].sort(),
    ...(opts.format === 'k8s' ? { objects } : {}),
    images,
  };
}

function imagesOf(lab: ClusterLab, entries: Map<string, Entry>): LabExportResult['images'] {
  const images = lab.parts.map((part) => {
    const image = imageOf(part, writableDirsOf(lab, part));
    const context = join('images', image.folder);
    for (const [file, entry] of Object.entries(image.files)) entries.set(join(context, file), entry);
    const args = Object.entries(image.args).map(([k, v]) => `--build-arg ${k}=${v} `);
    return {
      image: image.image,
      context,
      build: `docker build ${args.join('')}-t ${image.image} ${context}`,
    };
  });
  entries.set(join('images', 'build.sh'), {
    text: [
      '#!/bin/sh',
      '# Builds every image of the lab on this engine (nothing is pulled but the base image).',
      `# Another base: add --build-arg BASE=<image with node and sh on its PATH> (default ${DEFAULT_BASE_IMAGE}).`,
      '# For a cluster, push the tags to its registry, or load them on each node (docker save | ctr import).',
      'set -eu',
      'cd "$(dirname "$0")/.."',
      ...images.map((i) => i.build),
      '',
    ].join('\n'),
  });
  return images;
}
