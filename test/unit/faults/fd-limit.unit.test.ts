import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { fdLimitWarning, labFdNeed, openFilesLimit } from '../../../src/lab/fd-limit.js';

const dir = await mkdtemp(join(tmpdir(), 'tms-fd-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

/** A /proc/<pid>/limits file as the kernel writes it, with the given open-files limits. */
async function limits(soft: string, hard: string): Promise<string> {
  const file = join(dir, `limits-${soft}-${hard}`);
  await writeFile(
    file,
    [
      'Limit                     Soft Limit           Hard Limit           Units     ',
      'Max processes             127590               127590               processes ',
      `Max open files            ${soft.padEnd(20)} ${hard.padEnd(20)} files     `,
      '',
    ].join('\n'),
  );
  return file;
}

it("reads this process's own limit", async () => {
  const own = await openFilesLimit();
  expect(own?.soft).toBeGreaterThan(0);
});

it('a 20-service lab needs more than the usual 1,024: warned with the numbers and how to raise it', async () => {
  expect(labFdNeed(20)).toBe(20 * 64 + 150 + 64);
  const soft = await fdLimitWarning(20, await limits('1024', '524288'));
  expect(soft).toMatch(
    /ulimit -n is 1024; a lab of 20 services .* needs about 1494 .*: raise it first: ulimit -n 1494/,
  );
  const hard = await fdLimitWarning(20, await limits('1024', '1024'));
  expect(hard).toMatch(/the hard limit is 1024/);
});

it('no warning when the limit is enough, unlimited, or unknown', async () => {
  expect(await fdLimitWarning(20, await limits('65536', '65536'))).toBeUndefined();
  expect(await fdLimitWarning(20, await limits('unlimited', 'unlimited'))).toBeUndefined();
  expect(await fdLimitWarning(20, join(dir, 'missing'))).toBeUndefined();
});
