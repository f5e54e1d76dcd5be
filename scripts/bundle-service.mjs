#!/usr/bin/env node
// Bundles the sample-service kit into one file, `dist/lab/service.mjs`: the code every lab service
// runs and the attestation measures, so the output must be byte-for-byte reproducible.
//
//   node scripts/bundle-service.mjs [--entry <file>] [--outfile <file>]
//   node scripts/bundle-service.mjs --tampered   # the attack catalog's variants (src/attacks/payloads)
//
// The kit checks peers with src/pki/spiffe.ts and must not carry the CA's issuing code
// (@peculiar/x509 + reflect-metadata): the build fails if anything pulls them in.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    entry: { type: 'string', default: 'dist/src/services/sample/main.js' },
    outfile: { type: 'string', default: 'dist/lab/service.mjs' },
    tampered: { type: 'boolean', default: false },
  },
});
const FORBIDDEN = ['@peculiar/x509', 'reflect-metadata'];
const isForbidden = (path) =>
  FORBIDDEN.some(
    (pkg) => path === pkg || path.startsWith(`${pkg}/`) || path.includes(`node_modules/${pkg}/`),
  );

async function bundle(entry, outfile) {
  const result = await build({
    absWorkingDir: root,
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
    sourcemap: false,
    // Whitespace and syntax only (2.6 MB → 1.7 MB): less for each of the 20 processes to parse at
    // start and for attestation to hash; names stay, so stack traces in a service's log still read.
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'none',
    charset: 'utf8',
    metafile: true,
    logLevel: 'warning',
    logOverride: { 'ignored-bare-import': 'silent' },
  });

  const [output] = Object.values(result.metafile.outputs);
  const pulled = Object.keys(output?.inputs ?? {}).filter(isForbidden);
  if (pulled.length > 0) {
    console.error(
      `bundle-service: the kit must not contain certificate-issuing code, found ${pulled.join(', ')}`,
    );
    process.exit(1);
  }
  const bytes = readFileSync(outfile);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  console.log(`${relative(root, outfile)}: ${bytes.length} bytes, sha256 ${sha256}`);
}

if (values.tampered) {
  // Tampered and compromised variants of the kit, bundled the same way: what the attack scenarios
  // plant in (or run in place of) a service.
  const dir = resolve(root, 'dist/src/attacks/payloads');
  for (const file of readdirSync(dir).filter((f) => f.endsWith('-service.js'))) {
    await bundle(resolve(dir, file), resolve(root, 'dist/lab/tampered', file.replace(/\.js$/, '.mjs')));
  }
} else {
  await bundle(resolve(root, values.entry), resolve(root, values.outfile));
}
