import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import {
  diffListings,
  formatRecord,
  hashDirectory,
  hashTarStream,
  TREE_HASH_HEADER,
} from '../../../src/attestation/tree-hash.js';
import { isTrustedMsError } from '../../../src/errors.js';

const GOLDEN_HASH = 'sha256:8b84880f70add0dcd2b3df1c6fdf28b0407640310a97b0dd76fcd844b15c5a9a';
const GOLDEN_RECORDS = [
  'f 644 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 Index.md',
  'f 755 3c2b8456ca5132975c5289ae36217c2272dd8bec33aa4b00a830929db0cd0c23 bin/start',
  'l 777 e727e4bdf3657fd1d798edcd6b099d6e092f8573cba266154583a746bba0f346 current',
  'f 644 19ef95471e555cd6cbdf54bc242eee9ed916b282f8902bc75e7639955802c458 index.js',
];

const temps: string[] = [];
afterEach(() => {
  for (const dir of temps.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tms-tree-hash-'));
  temps.push(dir);
  return dir;
}

/** A folder `svc` in a fresh temp parent (the tar tests need a parent to archive it from). */
function serviceDir(): string {
  const dir = join(tempDir(), 'svc');
  mkdirSync(dir);
  return dir;
}

function put(root: string, rel: string, content: string | Buffer, mode = 0o644): void {
  const path = join(root, rel);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, content);
  chmodSync(path, mode);
}

/** The worked example of docs/attestation.md. */
function goldenTree(): string {
  const dir = serviceDir();
  put(dir, 'bin/start', '#!/bin/sh\nexec node index.js\n', 0o755);
  put(dir, 'index.js', "console.log('hi');\n");
  put(dir, 'Index.md', '');
  symlinkSync('index.js', join(dir, 'current'));
  return dir;
}

const LONG_DIR = `deep/${'nested-folder-name/'.repeat(5)}${'x'.repeat(40)}`;
const LONG_FILE = `${LONG_DIR}/${'a-rather-long-file-name-'.repeat(3)}.js`;

/** Exercises what the tar reader must get right: long names and link targets, hard links, UTF-8, modes. */
function richTree(): string {
  const dir = serviceDir();
  put(dir, 'package.json', '{"name":"svc"}\n');
  put(dir, 'bin/run', '#!/bin/sh\n', 0o750);
  put(dir, 'src/index.js', 'export {};\n', 0o664);
  put(dir, 'src/données é.txt', 'unicode name\n');
  put(dir, 'src/Zebra.js', 'z\n');
  put(dir, LONG_FILE, 'long path\n');
  put(dir, 'big.bin', Buffer.alloc(70_000, 7));
  put(dir, 'empty', '');
  linkSync(join(dir, 'package.json'), join(dir, 'package.hardlink.json'));
  symlinkSync('src/index.js', join(dir, 'main.js'));
  symlinkSync(`../${LONG_FILE}`, join(dir, 'src/long-target'));
  symlinkSync('does/not/exist', join(dir, 'dangling'));
  mkdirSync(join(dir, 'empty-folder'));
  return dir;
}

async function expectCode(promise: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isTrustedMsError(err), `expected a TrustedMsError, got ${String(err)}`).toBe(true);
  expect((err as { code: string }).code).toBe(code);
  if (message) expect((err as Error).message).toMatch(message);
}

function tarOf(dir: string, ...flags: string[]): Buffer {
  return execFileSync('tar', [...flags, '-C', dirname(dir), '-cf', '-', basename(dir)], {
    maxBuffer: 256 * 1024 * 1024,
  });
}

/** Feeds a buffer in small, irregular chunks, so headers and bodies straddle chunk boundaries. */
function chunked(data: Buffer, seed = 1): Readable {
  const chunks: Buffer[] = [];
  let state = seed;
  for (let off = 0; off < data.length; ) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    const n = 1 + (state % 700);
    chunks.push(data.subarray(off, off + n));
    off += n;
  }
  return Readable.from(chunks);
}

function docRecipe(): string {
  const doc = readFileSync(new URL('../../../docs/attestation.md', import.meta.url), 'utf8');
  const block = /```bash\n(tree_hash\(\) \([\s\S]*?\n\))\n/.exec(doc);
  if (!block?.[1]) throw new Error('the shell recipe was not found in docs/attestation.md');
  return block[1];
}

function recipeHash(dir: string): string {
  return execFileSync('bash', ['-c', `${docRecipe()}\ntree_hash "$1"`, 'bash', dir], {
    encoding: 'utf8',
  }).trim();
}

describe('hashDirectory', () => {
  it('reproduces the worked example of the docs', async () => {
    const result = await hashDirectory(goldenTree(), { listing: true });
    expect(result.records?.map(formatRecord)).toEqual(GOLDEN_RECORDS);
    expect(result).toMatchObject({ hash: GOLDEN_HASH, files: 4, bytes: 48 });
    const manual = createHash('sha256')
      .update(TREE_HASH_HEADER + GOLDEN_RECORDS.map((r) => `${r}\n`).join(''))
      .digest('hex');
    expect(result.hash).toBe(`sha256:${manual}`);
  });

  it('leaves the listing out unless asked', async () => {
    expect((await hashDirectory(goldenTree())).records).toBeUndefined();
  });

  it('hashes an empty folder as the header alone, and ignores empty folders', async () => {
    const dir = serviceDir();
    const headerOnly = `sha256:${createHash('sha256').update(TREE_HASH_HEADER).digest('hex')}`;
    expect(await hashDirectory(dir)).toEqual({ hash: headerOnly, files: 0, bytes: 0 });
    mkdirSync(join(dir, 'a/b'), { recursive: true });
    expect((await hashDirectory(dir)).hash).toBe(headerOnly);
  });

  it('gives the same hash for the same tree created in another order and with other group bits', async () => {
    const names = Array.from({ length: 60 }, (_, i) => `d${i % 7}/f${i}.js`);
    const a = serviceDir();
    const b = serviceDir();
    for (const name of names) put(a, name, `content of ${name}\n`, 0o644);
    for (const name of [...names].reverse()) put(b, name, `content of ${name}\n`, 0o664);
    expect((await hashDirectory(a)).hash).toBe((await hashDirectory(b)).hash);
  });

  describe('changes', () => {
    async function changes(mutate: (dir: string) => void): Promise<boolean> {
      const dir = goldenTree();
      put(dir, 'lib/util.js', 'export const x = 1;\n');
      const before = (await hashDirectory(dir)).hash;
      mutate(dir);
      return (await hashDirectory(dir)).hash !== before;
    }

    it('a one-byte change changes the hash', async () => {
      expect(await changes((d) => writeFileSync(join(d, 'lib/util.js'), 'export const x = 2;\n'))).toBe(true);
    });
    it('a renamed file changes the hash', async () => {
      expect(await changes((d) => renameSync(join(d, 'lib/util.js'), join(d, 'lib/utils.js')))).toBe(true);
    });
    it('chmod +x changes the hash', async () => {
      expect(await changes((d) => chmodSync(join(d, 'lib/util.js'), 0o755))).toBe(true);
    });
    it('an added empty file changes the hash', async () => {
      expect(await changes((d) => writeFileSync(join(d, 'lib/.keep'), ''))).toBe(true);
    });
    it('a changed symlink target changes the hash', async () => {
      expect(
        await changes((d) => {
          unlinkSync(join(d, 'current'));
          symlinkSync('./index.js', join(d, 'current'));
        }),
      ).toBe(true);
    });
    it('a group or other permission change does not', async () => {
      expect(
        await changes((d) => {
          chmodSync(join(d, 'lib/util.js'), 0o600);
          chmodSync(join(d, 'bin/start'), 0o711);
          chmodSync(join(d, 'index.js'), 0o666);
        }),
      ).toBe(false);
    });
  });

  it('agrees with the shell recipe of the docs', async () => {
    const golden = goldenTree();
    expect(recipeHash(golden)).toBe(GOLDEN_HASH);
    const rich = richTree();
    expect(recipeHash(rich)).toBe((await hashDirectory(rich)).hash);
  });

  it('leaves out excluded prefixes, per path component', async () => {
    const dir = goldenTree();
    const base = (await hashDirectory(dir)).hash;
    put(dir, 'data/db.json', '{}');
    put(dir, 'database.js', 'x');
    const withDb = await hashDirectory(dir, { exclude: ['data/'], listing: true });
    expect(withDb.records?.map((r) => r.path)).toContain('database.js');
    expect(withDb.records?.map((r) => r.path)).not.toContain('data/db.json');
    rmSync(join(dir, 'database.js'));
    expect((await hashDirectory(dir, { exclude: ['./data'] })).hash).toBe(base);
    await expectCode(hashDirectory(dir, { exclude: ['../x'] }), 'INVALID_INPUT');
  });

  it('refuses a missing folder, a file, a fifo and a newline in a name', async () => {
    const dir = serviceDir();
    await expectCode(hashDirectory(join(dir, 'nope')), 'FILE_NOT_FOUND');
    put(dir, 'file.txt', 'x');
    await expectCode(hashDirectory(join(dir, 'file.txt')), 'INVALID_INPUT', /not a directory/);

    const withNewline = serviceDir();
    put(withNewline, 'bad\nname', 'x');
    await expectCode(hashDirectory(withNewline), 'INVALID_INPUT', /newline/);
  });

  it.skipIf(process.platform === 'win32')('refuses a fifo, naming it', async () => {
    const dir = goldenTree();
    mkdirSync(join(dir, 'run'));
    execFileSync('mkfifo', [join(dir, 'run/pipe')]);
    await expectCode(hashDirectory(dir), 'INVALID_INPUT', /run\/pipe is a fifo/);
    expect((await hashDirectory(dir, { exclude: ['run'] })).hash).toBe(GOLDEN_HASH);
  });
});

describe('hashTarStream', () => {
  it('reproduces the worked example from a tar', async () => {
    const result = await hashTarStream(Readable.from([tarOf(goldenTree())]), { listing: true });
    expect(result.records?.map(formatRecord)).toEqual(GOLDEN_RECORDS);
    expect(result).toMatchObject({ hash: GOLDEN_HASH, files: 4, bytes: 48 });
  });

  for (const format of ['gnu', 'pax', 'ustar', 'posix']) {
    it(`equals hashDirectory for a tar in ${format} format, fed in odd chunks`, async () => {
      const dir = richTree();
      if (format === 'ustar') {
        // ustar has no long link targets: leave that one to the other formats.
        unlinkSync(join(dir, 'src/long-target'));
      }
      const expected = await hashDirectory(dir, { listing: true });
      const tar = tarOf(dir, `--format=${format}`);
      expect(await hashTarStream(chunked(tar), { listing: true })).toEqual(expected);
      expect(expected.records?.some((r) => r.path === LONG_FILE)).toBe(true);
      expect(LONG_FILE.length).toBeGreaterThan(100);
    });
  }

  it('reads straight from the tar process, the way a Docker archive streams', async () => {
    const dir = richTree();
    const child = spawn('tar', ['--format=pax', '-C', dirname(dir), '-cf', '-', basename(dir)]);
    const result = await hashTarStream(child.stdout);
    expect(result.hash).toBe((await hashDirectory(dir)).hash);
  });

  it('gives a hard link its target content, also when the target is excluded', async () => {
    const dir = serviceDir();
    put(dir, 'a/original.js', 'shared\n');
    linkSync(join(dir, 'a/original.js'), join(dir, 'b-link.js'));
    for (const exclude of [[], ['a'], ['b-link.js']]) {
      const expected = await hashDirectory(dir, { exclude, listing: true });
      expect(await hashTarStream(Readable.from([tarOf(dir)]), { exclude, listing: true })).toEqual(expected);
    }
  });

  it('keeps the top folder when told not to strip it', async () => {
    const dir = goldenTree();
    const dotTar = execFileSync('tar', ['-C', dir, '-cf', '-', '.']);
    expect((await hashTarStream(Readable.from([dotTar]), { stripFirstComponent: false })).hash).toBe(
      GOLDEN_HASH,
    );
    const kept = await hashTarStream(Readable.from([tarOf(dir)]), {
      stripFirstComponent: false,
      listing: true,
    });
    expect(kept.records?.map((r) => r.path)).toContain('svc/bin/start');
  });

  it('refuses a corrupt header', async () => {
    const tar = Buffer.from(tarOf(goldenTree()));
    tar[10] = (tar[10]! + 1) % 256;
    await expectCode(hashTarStream(Readable.from([tar])), 'INVALID_INPUT', /checksum/);
  });

  it('refuses garbage', async () => {
    const garbage = Buffer.alloc(4096, 'not a tar archive at all ');
    await expectCode(hashTarStream(Readable.from([garbage])), 'INVALID_INPUT');
  });

  it('refuses a truncated archive, in an entry or at an entry boundary', async () => {
    const dir = serviceDir();
    put(dir, 'a.bin', Buffer.alloc(5000, 1));
    put(dir, 'b.bin', Buffer.alloc(100, 2));
    const tar = tarOf(dir);
    await expectCode(hashTarStream(Readable.from([tar.subarray(0, 3000)])), 'INVALID_INPUT', /truncated/);
    // Everything up to the end-of-archive marker, without it: the last header ends at 512 * n.
    const headerAndBody = tar.indexOf(Buffer.alloc(1024));
    const boundary = Math.ceil(headerAndBody / 512) * 512;
    await expectCode(hashTarStream(Readable.from([tar.subarray(0, boundary)])), 'INVALID_INPUT', /truncated/);
    await expectCode(hashTarStream(Readable.from([Buffer.alloc(0)])), 'INVALID_INPUT', /truncated/);
  });

  it.skipIf(process.platform === 'win32')('refuses a fifo in the archive, naming it', async () => {
    const dir = goldenTree();
    execFileSync('mkfifo', [join(dir, 'pipe')]);
    await expectCode(hashTarStream(Readable.from([tarOf(dir)])), 'INVALID_INPUT', /svc\/pipe.*tar type "6"/);
  });

  it('refuses a newline in a name, an archive with two top folders and a text stream', async () => {
    const withNewline = serviceDir();
    put(withNewline, 'bad\nname', 'x');
    await expectCode(hashTarStream(Readable.from([tarOf(withNewline)])), 'INVALID_INPUT', /newline/);

    const parent = tempDir();
    put(parent, 'one/a', 'a');
    put(parent, 'two/b', 'b');
    const two = execFileSync('tar', ['-C', parent, '-cf', '-', 'one', 'two']);
    await expectCode(hashTarStream(Readable.from([two])), 'INVALID_INPUT', /more than one top folder/);

    await expectCode(hashTarStream(Readable.from(['text'])), 'INVALID_INPUT', /binary/);
  });
});

describe('diffListings', () => {
  it('names the tampered, added and removed paths', async () => {
    const dir = goldenTree();
    const registered = (await hashDirectory(dir, { listing: true })).records!;
    writeFileSync(join(dir, 'index.js'), "console.log('pwned');\n");
    chmodSync(join(dir, 'Index.md'), 0o755);
    put(dir, 'backdoor.js', 'x');
    rmSync(join(dir, 'bin/start'));
    const measured = (await hashDirectory(dir, { listing: true })).records!;
    expect(diffListings(registered, measured)).toEqual({
      added: ['backdoor.js'],
      removed: ['bin/start'],
      changed: ['Index.md', 'index.js'],
    });
    expect(diffListings(registered, registered)).toEqual({ added: [], removed: [], changed: [] });
  });
});
