import { mkdir, mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isTrustedMsError } from '../../../src/errors.js';
import { JsonFileStore } from '../../../src/store/json-file-store.js';
import { emptyStoreData, type StoreData, validateStoreData } from '../../../src/store/schema.js';

let dir: string;
let file: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tms-jfs-'));
  file = join(dir, 'home', 'store.json');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function open(lock?: ConstructorParameters<typeof JsonFileStore>[0]['lock']): JsonFileStore<StoreData> {
  return new JsonFileStore<StoreData>({
    file,
    initial: () => emptyStoreData(),
    validate: validateStoreData,
    ...(lock ? { lock } : {}),
  });
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (isTrustedMsError(err)) return err.code;
    throw err;
  }
  throw new Error('expected a TrustedMsError');
}

const user = (name: string) => ({
  name,
  role: 'r',
  password: 'x',
  keys: [],
  createdAt: 'now',
  updatedAt: 'now',
});

describe('JsonFileStore: creation', () => {
  it('reads a missing file as the initial data without creating anything', async () => {
    expect(await open().read()).toEqual(emptyStoreData());
    await expect(stat(join(dir, 'home'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('creates the folder 0700 and the file 0600 on the first update', async () => {
    const result = await open().update((d) => {
      d.users.a = user('a');
      return 'done';
    });
    expect(result).toBe('done');
    expect((await stat(join(dir, 'home'))).mode & 0o777).toBe(0o700);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(Object.keys((await open().read()).users)).toEqual(['a']);
  });

  it('writes 0600 even over a leftover 0644 temp file from a killed writer', async () => {
    await mkdir(join(dir, 'home'));
    await writeFile(join(dir, 'home', '.store.json.tmp'), 'half a wri', { mode: 0o644 });
    await open().update((d) => {
      d.users.a = user('a');
    });
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await open().read()).users.a?.name).toBe('a');
  });

  it('creates a new file even when fn changes nothing, and later skips writes that change nothing', async () => {
    const store = open();
    await store.update(() => undefined);
    const before = await stat(file);
    await store.update(() => undefined);
    const after = await stat(file);
    expect(after.ino).toBe(before.ino); // not replaced by a rename
  });

  it('writes nothing when fn throws', async () => {
    const store = open();
    await store.update((d) => {
      d.users.a = user('a');
    });
    const bytes = await readFile(file);
    await expect(
      store.update((d) => {
        d.users.b = user('b');
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await readFile(file)).toEqual(bytes);
  });

  it('applies 50 concurrent updates from one process', async () => {
    const store = open();
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        store.update((d) => {
          d.users[`u${i}`] = user(`u${i}`);
        }),
      ),
    );
    expect(Object.keys((await store.read()).users)).toHaveLength(50);
  });
});

describe('JsonFileStore: refusing files that are not ours, without touching them', () => {
  const cases: [string, string | Buffer, string][] = [
    ['garbage bytes', Buffer.from([0xff, 0xfe, 0x00, 0x13, 0x37, 0x80]), 'STORE_CORRUPT'],
    ['truncated JSON', '{"schemaVersion": 1, "users": {', 'STORE_CORRUPT'],
    ['an empty file', '', 'STORE_CORRUPT'],
    ['null', 'null', 'STORE_CORRUPT'],
    ['an array', '[]', 'STORE_CORRUPT'],
    ['JSON of another program', '{"name":"my-app","version":"1.0.0"}', 'STORE_CORRUPT'],
    ['no schemaVersion', '{"users":{},"roles":{},"services":{}}', 'STORE_CORRUPT'],
    ['a string schemaVersion', '{"schemaVersion":"1","users":{},"roles":{},"services":{}}', 'STORE_CORRUPT'],
    ['users as an array', '{"schemaVersion":1,"users":[],"roles":{},"services":{}}', 'STORE_CORRUPT'],
    [
      'a user without a password',
      '{"schemaVersion":1,"users":{"a":{"name":"a","role":"r","keys":[],"createdAt":"t","updatedAt":"t"}},"roles":{},"services":{}}',
      'STORE_CORRUPT',
    ],
    [
      'a future schemaVersion',
      '{"schemaVersion":3,"users":{},"roles":{},"services":{},"tenants":{}}',
      'STORE_VERSION_UNSUPPORTED',
    ],
    [
      'a future schemaVersion of another shape',
      '{"schemaVersion":7,"everything":"else"}',
      'STORE_VERSION_UNSUPPORTED',
    ],
  ];

  for (const [label, content, code] of cases) {
    it(`${label} → ${code}, on read and on update, file unchanged`, async () => {
      await mkdir(join(dir, 'home'));
      await writeFile(file, content, { mode: 0o644 });
      const before = await readFile(file);
      const mtime = (await stat(file)).mtimeMs;
      const store = open();
      expect(await codeOf(store.read())).toBe(code);
      expect(
        await codeOf(
          store.update((d) => {
            d.users.x = user('x');
          }),
        ),
      ).toBe(code);
      expect(await readFile(file)).toEqual(before);
      expect((await stat(file)).mtimeMs).toBe(mtime);
      expect((await stat(file)).mode & 0o777).toBe(0o644);
    });
  }

  it('names the file in the STORE_CORRUPT message and says it was left untouched', async () => {
    await mkdir(join(dir, 'home'));
    await writeFile(file, 'not json');
    await expect(open().read()).rejects.toMatchObject({
      code: 'STORE_CORRUPT',
      message: expect.stringContaining(file),
      actions: expect.arrayContaining(['the file was left untouched']),
    });
  });

  it('points at the offending field', async () => {
    await mkdir(join(dir, 'home'));
    await writeFile(file, '{"schemaVersion":1,"users":{"a":{"name":"b"}},"roles":{},"services":{}}');
    await expect(open().read()).rejects.toThrow(/users\.a\.name/);
  });

  it('reports other fs errors as STORE_IO', async () => {
    await mkdir(file, { recursive: true }); // a folder where the file should be
    expect(await codeOf(open().read())).toBe('STORE_IO');
    expect(await codeOf(open().update(() => undefined))).toBe('STORE_IO');
  });
});

describe('JsonFileStore: the lock', () => {
  it('gives up on a fresh lock held by someone else with STORE_LOCKED', async () => {
    await mkdir(`${file}.lock`, { recursive: true });
    const store = open({ retries: 3, minTimeoutMs: 5, maxTimeoutMs: 10 });
    const err = await store.update(() => undefined).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'STORE_LOCKED', actions: expect.any(Array) });
    await expect(stat(file)).rejects.toMatchObject({ code: 'ENOENT' }); // nothing written
  });

  it('takes over a stale lock (left by a killed writer)', async () => {
    await mkdir(`${file}.lock`, { recursive: true });
    const old = new Date(Date.now() - 60_000);
    await utimes(`${file}.lock`, old, old);
    const store = open({ retries: 3, minTimeoutMs: 5, maxTimeoutMs: 10 });
    await store.update((d) => {
      d.users.a = user('a');
    });
    expect((await store.read()).users.a?.name).toBe('a');
    await expect(stat(`${file}.lock`)).rejects.toMatchObject({ code: 'ENOENT' }); // released
  });

  it('releases the lock when fn throws', async () => {
    const store = open({ retries: 0 });
    await expect(
      store.update(() => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    await expect(stat(`${file}.lock`)).rejects.toMatchObject({ code: 'ENOENT' });
    await store.update(() => undefined);
  });
});
