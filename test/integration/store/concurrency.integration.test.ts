import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileLabStore } from '../../../src/store/file-lab-store.js';
import { validateStoreData } from '../../../src/store/schema.js';

/**
 * Real processes writing one store: lowdb alone loses updates here (ENVIRONMENT.md); with the
 * file lock none may be lost, and a writer killed with SIGKILL must leave a loadable file and a
 * lock that the next writer takes over.
 */

const WRITER = fileURLToPath(new URL('./writer.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

let home: string;
const children: ChildProcess[] = [];

beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), 'tms-conc-'));
});
afterEach(async () => {
  for (const child of children.splice(0))
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await rm(home, { recursive: true, force: true });
});

interface Writer {
  child: ChildProcess;
  /** Resolves with the first stdout line equal to `line`. */
  waitFor(line: string): Promise<void>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

function startWriter(prefix: string, mode: string, n?: number): Writer {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', WRITER, home, prefix, mode, ...(n === undefined ? [] : [String(n)])],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  children.push(child);
  let stdout = '';
  let stderr = '';
  const waiters: { line: string; resolve: () => void }[] = [];
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    for (const w of [...waiters]) {
      if (stdout.split('\n').includes(w.line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exit = new Promise<{
    code: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
  }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return {
    child,
    exit,
    waitFor: (line) =>
      new Promise<void>((resolve, reject) => {
        waiters.push({ line, resolve });
        void exit.then((e) =>
          reject(new Error(`writer exited (${e.code ?? e.signal}) before "${line}": ${e.stderr}`)),
        );
      }),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function loadStoreFile(): Promise<ReturnType<typeof validateStoreData>> {
  const file = join(home, 'store.json');
  return validateStoreData(JSON.parse(await readFile(file, 'utf8')), file);
}

describe('LabStore across processes', () => {
  for (const [procs, each] of [
    [2, 100],
    [4, 60],
  ] as const) {
    it(`${procs} processes x ${each} updates: none lost`, async () => {
      const started = performance.now();
      const writers = Array.from({ length: procs }, (_, p) => startWriter(`w${p}`, 'count', each));
      const results = await Promise.all(writers.map((w) => w.exit));
      const wallMs = performance.now() - started;
      for (const r of results) expect(r, r.stderr).toMatchObject({ code: 0 });
      const data = await loadStoreFile();
      expect(Object.keys(data.users)).toHaveLength(procs * each);
      const summaries = results.map((r) => JSON.parse(r.stdout) as { totalMs: number; medianMs: number });
      console.log(
        `[store] ${procs} processes x ${each} updates: wall ${wallMs.toFixed(0)} ms (incl. process start), ` +
          `per process ${summaries.map((s) => s.totalMs.toFixed(0)).join('/')} ms, ` +
          `median locked update under contention ${summaries.map((s) => s.medianMs.toFixed(1)).join('/')} ms`,
      );
    });
  }

  it('3 processes x 100 audit appends: none lost, the hash chain whole', async () => {
    const writers = Array.from({ length: 3 }, (_, p) => startWriter(`a${p}`, 'audit', 100));
    for (const r of await Promise.all(writers.map((w) => w.exit)))
      expect(r, r.stderr).toMatchObject({ code: 0 });
    const store = new FileLabStore(home);
    const verdict = await store.verifyAudit();
    expect(verdict).toMatchObject({ ok: true, entries: 300, problems: [] });
    const records = await store.auditRecords();
    expect(records.map((r) => r.seq)).toEqual(Array.from({ length: 300 }, (_, i) => i));
    for (const p of ['a0', 'a1', 'a2']) expect(records.filter((r) => r.actor === p)).toHaveLength(100);
  });

  it('survives SIGKILL of writers mid-loop: the file loads and the next update succeeds', async () => {
    for (const delayMs of [5, 37, 120]) {
      const w = startWriter(`k${delayMs}`, 'loop');
      await w.waitFor('ready');
      await sleep(delayMs);
      w.child.kill('SIGKILL');
      expect((await w.exit).signal).toBe('SIGKILL');
      const before = Object.keys((await loadStoreFile()).users).length;
      expect(before).toBeGreaterThan(0);
      const t = performance.now();
      await new FileLabStore(home).update((d) => {
        d.users[`after-${delayMs}`] = { ...d.users[`k${delayMs}-0`]!, name: `after-${delayMs}` };
      });
      const data = await loadStoreFile();
      expect(Object.keys(data.users)).toHaveLength(before + 1);
      console.log(
        `[store] killed after ${delayMs} ms: ${before} users intact, next update took ${(performance.now() - t).toFixed(0)} ms`,
      );
    }
    expect((await stat(join(home, 'store.json'))).mode & 0o777).toBe(0o600);
  });

  it('takes over the lock of a writer killed while holding it', async () => {
    const w = startWriter('h', 'hold', 10);
    await w.waitFor('holding');
    await stat(join(home, 'store.json.lock')); // the lock is held now
    w.child.kill('SIGKILL');
    await w.exit;
    await stat(join(home, 'store.json.lock')); // ...and left behind
    const t = performance.now();
    await new FileLabStore(home).update((d) => {
      d.users.survivor = { ...d.users['h-0']!, name: 'survivor' };
    });
    const waited = performance.now() - t;
    const data = await loadStoreFile();
    // The killed update (h-10) was never written; the 10 before it and ours were.
    expect(Object.keys(data.users).sort()).toEqual(
      [...Array.from({ length: 10 }, (_, i) => `h-${i}`), 'survivor'].sort(),
    );
    expect(waited).toBeLessThan(20_000);
    console.log(
      `[store] stale lock of a killed writer taken over after ${waited.toFixed(0)} ms (stale = 5000 ms)`,
    );
  });

  it('measures a locked update in one process (200 sequential updates)', async () => {
    const store = new FileLabStore(home);
    await store.update(() => undefined);
    const times: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t = performance.now();
      await store.update((d) => {
        d.users[`s-${i}`] = {
          name: `s-${i}`,
          role: 'r',
          password: 'x',
          keys: [],
          createdAt: 't',
          updatedAt: 't',
        };
      });
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    const median = times[100]!;
    console.log(
      `[store] locked update, 200 sequential: median ${median.toFixed(2)} ms, p95 ${times[190]!.toFixed(2)} ms, max ${times[199]!.toFixed(2)} ms`,
    );
    expect(Object.keys((await store.data()).users)).toHaveLength(200);
    expect(median).toBeLessThan(50);
  });
});
