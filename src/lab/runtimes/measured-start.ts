import { DEFINITION_VARIABLE } from '../../kernel/part-config.js';
import type { CopiedEntry } from './code-copy.js';

/**
 * How a service runs the code that was measured, and nothing read from disk after the measurement
 * (issue 14; docs/attestation.md, "Running the measured bytes"). The red team renamed its own
 * `service.mjs` over the read-only copy in the milliseconds between the start and Node's read of
 * the path, so the runtime no longer names a path for Node to read: it sends the bytes it measured
 * through the child's standard input, and a small program given on the command line (so it is in
 * the manifest's argv and in `/proc/<pid>/cmdline`) reads them, computes their tree hash, refuses
 * to run anything if it is not the hash the start was measured as, and serves the tree's modules
 * from those bytes through module hooks. The entry keeps its `file:` URL in the copy, so
 * `import.meta.url` (the bundle's `createRequire`) and relative imports behave as when it was run
 * from the file.
 */

/** Exit code of a start whose handed bytes are not the measured code (nothing of it ran). */
export const MEASURED_START_REFUSED = 70;

/**
 * Module hooks (Node's `module.register`): modules of the tree are resolved and loaded from the
 * handed bytes only. `.mjs` only: a `.js` or `.cjs` file's format depends on package.json lookups
 * on disk, and the lab's services are one ESM bundle.
 */
const HOOKS = `let s;
export function initialize(d) { s = d; }
export async function resolve(spec, ctx, next) {
  if (Object.hasOwn(s, spec)) return { url: spec, shortCircuit: true };
  if (ctx.parentURL && Object.hasOwn(s, ctx.parentURL) && /^\\.{1,2}\\//.test(spec)) {
    const url = new URL(spec, ctx.parentURL).href;
    if (Object.hasOwn(s, url)) return { url, shortCircuit: true };
  }
  return next(spec, ctx);
}
export async function load(url, ctx, next) {
  if (Object.hasOwn(s, url)) return { format: 'module', source: s[url], shortCircuit: true };
  return next(url, ctx);
}`;

/**
 * The program run with `--input-type=module --eval`; its arguments are the copy's folder, the entry
 * in it and the tree hash. The hash is computed as src/attestation/tree-hash.ts does (format v1).
 * Standard input is the framing of `measuredPayload`.
 */
const BOOTSTRAP = `import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { register } from 'node:module';
import { pathToFileURL } from 'node:url';
const [dir, entry, expected] = process.argv.slice(1);
const input = readFileSync(0);
const cut = input.indexOf(10);
const list = JSON.parse(input.subarray(0, cut).toString('utf8'));
const sha = (b) => createHash('sha256').update(b).digest('hex');
const files = new Map();
const records = [];
let at = cut + 1;
for (const e of list) {
  if (e.target !== undefined) {
    records.push([e.path, 'l 777 ' + sha(e.target) + ' ' + e.path + '\\n']);
    continue;
  }
  const bytes = input.subarray(at, at + e.size);
  at += e.size;
  files.set(e.path, bytes);
  records.push([e.path, 'f ' + (e.exec ? '755' : '644') + ' ' + sha(bytes) + ' ' + e.path + '\\n']);
}
records.sort((a, b) => Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])));
const tree = createHash('sha256').update('trusted-ms tree-hash v1\\n');
for (const [, r] of records) tree.update(r);
if (at !== input.length || 'sha256:' + tree.digest('hex') !== expected) {
  console.error('measured start: the code handed over is not the code measured as ' + expected + '; nothing of it runs');
  process.exit(${MEASURED_START_REFUSED});
}
const base = pathToFileURL(dir).href + '/';
const sources = {};
for (const [path, bytes] of files) if (path.endsWith('.mjs')) sources[base + path] = bytes.toString('utf8');
const definition = files.get('service.json');
if (definition !== undefined) process.env.${DEFINITION_VARIABLE} = definition.toString('utf8');
register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(HOOKS)}), { data: sources });
await import(pathToFileURL(entry).href);
`;

/** The arguments after the interpreter of a measured start of `entry` (a file of the copy `dir`). */
export function measuredStartArgv(dir: string, entry: string, treeHash: string): string[] {
  return ['--input-type=module', '--eval', BOOTSTRAP, dir, entry, treeHash];
}

/**
 * What the child reads on its standard input: one line of JSON listing the tree's entries in the
 * order given (`{path, exec, size}` for a file, `{path, target}` for a symlink), then every file's
 * bytes in that order. Folders are not listed: the tree hash does not record them.
 */
export function measuredPayload(entries: readonly CopiedEntry[]): Buffer {
  const list: ({ path: string; exec: boolean; size: number } | { path: string; target: string })[] = [];
  const bodies: Buffer[] = [];
  for (const e of entries) {
    if (e.kind === 'file') {
      list.push({ path: e.path, exec: e.exec, size: e.data.length });
      bodies.push(e.data);
    } else if (e.kind === 'link') {
      list.push({ path: e.path, target: e.target });
    }
  }
  return Buffer.concat([Buffer.from(`${JSON.stringify(list)}\n`), ...bodies]);
}
