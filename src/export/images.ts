import { posix } from 'node:path';
import { builtFile, type PlannedPart } from '../lab/plan.js';
import { CONTAINER_APP_DIR } from '../lab/runtimes/docker/docker-runtime.js';
import { IMAGE_ROOT } from '../lab/runtimes/docker/images.js';
import { packageVersion } from '../paths.js';

/** The user every exported image runs as: no user of the base image, and not root. */
export const RUN_AS = 65532;

/** The base the exported images are built on, overridable at build time (`--build-arg BASE=...`). */
export const DEFAULT_BASE_IMAGE = 'node:20-slim';

/** One image to build with `docker build`, from a folder under `images/` in the export. */
export interface ImageContext {
  /** the tag the manifests and the compose file run */
  image: string;
  /** folder under the export's `images/` (the services share one) */
  folder: string;
  /** build arguments besides BASE */
  args: Record<string, string>;
  /** files to write into the folder: name → content, or `copy` of a built file of this package */
  files: Record<string, { text: string } | { copy: string }>;
  /** how the part's program is started inside the image */
  command: string[];
}

/**
 * The security service and the gateway run the bundles `npm run build` makes (dist/lab); a
 * service's image holds its code folder (the bundle and its service.json), the tree attestation
 * measures, as a Docker lab copies it into the container. Images are built here, never pulled
 * from a registry of ours: no registry holds them.
 */
export function imageOf(part: PlannedPart, writableDirs: readonly string[] = []): ImageContext {
  const version = packageVersion();
  const dockerfile = (copies: string[]) => ({
    text: [
      `# Built by \`docker build\` in this folder (or \`docker compose build\`); BASE is any image with node and sh on its PATH.`,
      `ARG BASE=${DEFAULT_BASE_IMAGE}`,
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a Dockerfile variable, not a template
      'FROM ${BASE}',
      ...copies,
      // A folder the part writes (its store, its state) belongs to its user, so that a volume
      // mounted there starts out as the user's (compose copies the image's folder into it).
      ...(writableDirs.length > 0
        ? [`RUN mkdir -p ${writableDirs.join(' ')} && chown ${RUN_AS}:${RUN_AS} ${writableDirs.join(' ')}`]
        : []),
      // A non-root user that owns nothing in the image: the code is read-only to the part itself.
      `USER ${RUN_AS}:${RUN_AS}`,
      '',
    ].join('\n'),
  });
  if (part.config.kind === 'service') {
    const serviceJson = 'serviceJson' in part ? String(part.serviceJson) : '';
    const name = part.config.part;
    // One folder for every service (the bundle is 1.7 MB): SERVICE picks the definition, so each
    // image's code folder is the bundle and its own service.json, the tree attestation measures.
    return {
      image: `trusted-ms-service-${name}:${version}`,
      folder: 'service',
      args: { SERVICE: name },
      files: {
        Dockerfile: dockerfile([
          'ARG SERVICE',
          `COPY service.mjs ${CONTAINER_APP_DIR}/service.mjs`,
          `COPY definitions/\${SERVICE}.json ${CONTAINER_APP_DIR}/service.json`,
        ]),
        'service.mjs': { copy: builtFile('lab', 'service.mjs') },
        [`definitions/${name}.json`]: { text: serviceJson },
      },
      command: ['node', posix.join(CONTAINER_APP_DIR, 'service.mjs')],
    };
  }
  const bundle = `${part.config.kind}.mjs`;
  const inImage = posix.join(IMAGE_ROOT, 'dist', 'lab', bundle);
  return {
    image: `trusted-ms-${part.config.kind}:${version}`,
    folder: part.config.kind,
    args: {},
    files: {
      Dockerfile: dockerfile([`COPY ${bundle} ${inImage}`]),
      [bundle]: { copy: builtFile('lab', bundle) },
    },
    command: ['node', inImage],
  };
}
