#!/usr/bin/env node
// Fails when the top-level folders of src/ import each other in a cycle (services -> lab -> services,
// say): the servers must not import the orchestrator, nor the orchestrator a server module; both
// import the kernel. Run by `npm run lint`. Prints each cycle with one file per edge that makes it.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative, sep } from 'node:path';

const root = 'src';
const edges = new Map();
const example = new Map();
const topOf = (file) => relative(root, file).split(sep)[0].replace(/\.ts$/, '');

function walk(dir) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p);
    else if (e.name.endsWith('.ts')) scan(p);
  }
}

function scan(file) {
  const from = topOf(file);
  const text = readFileSync(file, 'utf8');
  for (const m of text.matchAll(/^(?:import|export)[^'"]*?from\s+'(\.[^']+)'/gm)) {
    const target = normalize(join(dirname(file), m[1]));
    const rel = relative(root, target);
    if (rel.startsWith('..')) continue;
    const to = rel.split(sep)[0].replace(/\.js$/, '');
    if (to === from) continue;
    if (!edges.has(from)) edges.set(from, new Set());
    edges.get(from).add(to);
    if (!example.has(`${from}>${to}`)) example.set(`${from}>${to}`, file);
  }
}

walk(root);

// Tarjan's strongly connected components: any with more than one folder is a cycle.
let index = 0;
const idx = new Map();
const low = new Map();
const stack = [];
const onStack = new Set();
const cycles = [];
function connect(v) {
  idx.set(v, index);
  low.set(v, index);
  index++;
  stack.push(v);
  onStack.add(v);
  for (const w of edges.get(v) ?? []) {
    if (!idx.has(w)) {
      connect(w);
      low.set(v, Math.min(low.get(v), low.get(w)));
    } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
  }
  if (low.get(v) === idx.get(v)) {
    const scc = [];
    let w;
    do {
      w = stack.pop();
      onStack.delete(w);
      scc.push(w);
    } while (w !== v);
    if (scc.length > 1) cycles.push(scc);
  }
}
for (const v of edges.keys()) if (!idx.has(v)) connect(v);

if (cycles.length === 0) {
  console.log(`layers: no import cycle between the ${edges.size} top-level folders of src/`);
} else {
  for (const c of cycles) {
    console.error(`layers: import cycle between src/${c.join(', src/')}`);
    for (const a of c)
      for (const b of c)
        if (edges.get(a)?.has(b)) console.error(`  ${a} -> ${b}  (e.g. ${example.get(`${a}>${b}`)})`);
  }
  process.exit(1);
}
