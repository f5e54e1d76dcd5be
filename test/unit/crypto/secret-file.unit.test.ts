import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readSecretFile } from '../../../src/crypto/secret-file.js';
import { TrustedMsError } from '../../../src/errors.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tms-secret-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});
const opts = { maxBytes: 100, notFound: (p: string) => new TrustedMsError('FILE_NOT_FOUND', `none at ${p}`) };

describe('readSecretFile (shared by the user key and CA key loaders)', () => {
  it('reads a 0600 file', async () => {
    await writeFile(join(dir, 'k'), 'secret', { mode: 0o600 });
    expect(await readSecretFile(join(dir, 'k'), opts)).toBe('secret');
  });
  it('refuses a file group or others can access, naming the fix and not the content', async () => {
    await writeFile(join(dir, 'k'), 'the-secret', { mode: 0o600 });
    for (const mode of [0o640, 0o604, 0o660]) {
      await chmod(join(dir, 'k'), mode);
      const err = await readSecretFile(join(dir, 'k'), opts).catch((e: unknown) => e);
      expect(err).toMatchObject({
        code: 'KEY_PERMISSIONS_TOO_OPEN',
        message: expect.stringContaining('chmod 600'),
      });
      expect((err as Error).message).not.toContain('the-secret');
    }
    // ...unless it is a public file read with the same care
    expect(await readSecretFile(join(dir, 'k'), { ...opts, shared: true })).toBe('the-secret');
  });
  it('refuses an oversized file, a folder and a FIFO (without blocking), and says when it is missing', async () => {
    await writeFile(join(dir, 'big'), 'x'.repeat(101), { mode: 0o600 });
    await expect(readSecretFile(join(dir, 'big'), opts)).rejects.toMatchObject({ code: 'KEY_INVALID' });
    await mkdir(join(dir, 'folder'), { mode: 0o700 });
    await expect(readSecretFile(join(dir, 'folder'), opts)).rejects.toMatchObject({ code: 'KEY_INVALID' });
    await expect(
      readSecretFile(join(dir, 'folder'), { ...opts, notRegularCode: 'KEY_UNREADABLE' }),
    ).rejects.toMatchObject({
      code: 'KEY_UNREADABLE',
    });
    execFileSync('mkfifo', ['-m', '600', join(dir, 'fifo')]);
    await expect(readSecretFile(join(dir, 'fifo'), opts)).rejects.toMatchObject({ code: 'KEY_INVALID' });
    await expect(readSecretFile(join(dir, 'nope'), opts)).rejects.toMatchObject({ code: 'FILE_NOT_FOUND' });
  });
});
