#!/usr/bin/env node
// Bundles the security service and the gateway into `dist/lab/security.mjs` and
// `dist/lab/gateway.mjs`, the files `lab up` starts, and the programs the lab runs in containers of
// their own on a Docker lab's edge network (the DoS attacker's flood: `dist/lab/flood.mjs`; the
// clients of `lab load --client-containers`: `dist/lab/load-client.mjs`), which
// get that one file on the bare node image. Why: started from `dist/src` each part resolved
// and read hundreds of files from node_modules at start-up (~450 ms and ~280 ms of CPU, measured
// here); one bundled file takes ~190 ms and ~160 ms, and the security service is on `lab up`'s
// critical path. Not attested (only the services' code folders are), so no reproducibility rule.
//
//   node scripts/bundle-parts.mjs
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const PARTS = {
  security: 'dist/src/services/security/main.js',
  gateway: 'dist/src/services/gateway/main.js',
  flood: 'dist/src/attacks/flood-main.js',
  'load-client': 'dist/src/load/client-main.js',
};
for (const [part, entry] of Object.entries(PARTS)) {
  await build({
    absWorkingDir: root,
    entryPoints: [resolve(root, entry)],
    outfile: resolve(root, `dist/lab/${part}.mjs`),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
    // Whitespace and syntax only: names stay, so a stack trace in a part's log still reads.
    minifyWhitespace: true,
    minifySyntax: true,
    sourcemap: false,
    legalComments: 'none',
    charset: 'utf8',
    logLevel: 'warning',
    logOverride: { 'ignored-bare-import': 'silent' },
  });
}
console.log(
  Object.keys(PARTS)
    .map((p) => `dist/lab/${p}.mjs`)
    .join(', '),
);
