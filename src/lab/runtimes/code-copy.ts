import { createHash, randomBytes } from 'node:crypto';
import {
  chmod,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { basename, join, relative, sep } from 'node:path';
import { hashDirectory, hashRecords, type TreeRecord } from '../../attestation/tree-hash.js';
import { TrustedMsError } from '../../errors.js';

/** A service's code as it was read once: measured from these bytes, and run from their copy. */
export interface CodeCopy {
  /** `<runRoot>/<hex of the tree hash>`: read-only; what a re-measure compares with its name */
  dir: string;
  /** the tree hash of the bytes copied (tree-hash v1, as `hashDirectory` gives for the folder) */
  hash: string;
  /** the bytes read and hashed: what a measured start hands to the process (measured-start.ts) */
  entries: CopiedEntry[];
}

/** One entry of a code folder as it was read. */
export type CopiedEntry =
  | { kind: 'dir'; path: string }
  | { kind: 'file'; path: string; data: Buffer; exec: boolean }
  | { kind: 'link'; path: string; target: string };

/**
 * The folder's content, read once. Hashing these bytes, writing the same bytes to the copy and
 * handing them to Node (measured-start.ts) is what closes the gap between measuring and running
 * (issue 14): a file swapped in the folder after this read, or in the copy, changes neither the
 * hash nor what runs, and one swapped in the folder before it is in both.
 */
async function readTree(root: string): Promise<CopiedEntry[]> {
  const items: CopiedEntry[] = [];
  const walk = async (abs: string, rel: string): Promise<void> => {
    for (const name of (await readdir(abs)).sort()) {
      const from = join(abs, name);
      const path = rel === '' ? name : `${rel}/${name}`;
      if (path.includes('\n'))
        throw new TrustedMsError('INVALID_INPUT', `path ${JSON.stringify(path)} contains a newline`);
      const st = await lstat(from);
      if (st.isDirectory()) {
        items.push({ kind: 'dir', path });
        await walk(from, path);
      } else if (st.isFile()) {
        items.push({ kind: 'file', path, data: await readFile(from), exec: (st.mode & 0o100) !== 0 });
      } else if (st.isSymbolicLink()) {
        items.push({ kind: 'link', path, target: await readlink(from) });
      } else {
        throw new TrustedMsError('INVALID_INPUT', `${from} is neither a file, a folder nor a symlink`);
      }
    }
  };
  await walk(root, '');
  return items;
}

function recordsOf(items: CopiedEntry[]): TreeRecord[] {
  const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
  return items.flatMap((i): TreeRecord[] => {
    if (i.kind === 'file')
      return [
        { kind: 'f', mode: i.exec ? '755' : '644', sha256: sha(i.data), path: i.path, size: i.data.length },
      ];
    if (i.kind === 'link')
      return [
        { kind: 'l', mode: '777', sha256: sha(i.target), path: i.path, size: Buffer.byteLength(i.target) },
      ];
    return [];
  });
}

/** Where a lab's code copies are: `<home>/lab/run`. */
export function codeCopiesDir(labDir: string): string {
  return join(labDir, 'run');
}

/** The entry's path inside the copy, when the entry is a file of the code folder (else undefined). */
export function entryInCopy(appDir: string, entry: string, copy: string): string | undefined {
  const rel = relative(appDir, entry);
  if (rel === '' || rel.startsWith(`..${sep}`) || rel === '..' || rel.startsWith(sep)) return undefined;
  return join(copy, rel);
}

/** Where the copy of the code with this tree hash is (or will be): its name is the hash's hex. */
export function copyDirFor(runRoot: string, hash: string): string {
  return join(runRoot, hash.slice('sha256:'.length));
}

/** The hex part of a copy's name: the tree hash it was made with. */
export function hashOfCopy(dir: string): string {
  return `sha256:${basename(dir)}`;
}

/**
 * Copies a service's code folder to `<runRoot>/<its tree hash>`, files 0444 (0555 with the owner's
 * executable bit, which the tree hash records), folders 0555, and says where. A copy already there
 * with the same content is used as it is; one whose content no longer matches its name is replaced.
 * The copy is written under a temporary name and renamed into place, so a concurrent start (the
 * watchman's and `attack simulate`'s) never runs a half-written copy.
 */
export async function copyMeasured(appDir: string, runRoot: string): Promise<CodeCopy> {
  const items = await readTree(appDir);
  const { hash } = hashRecords(recordsOf(items));
  const dir = copyDirFor(runRoot, hash);
  const copy = { dir, hash, entries: items };
  if (await intact(dir, hash)) return copy;
  await mkdir(runRoot, { recursive: true, mode: 0o700 });
  const tmp = join(runRoot, `.partial-${randomBytes(6).toString('hex')}`);
  await mkdir(tmp, { mode: 0o700 });
  try {
    for (const i of items) {
      const to = join(tmp, i.path);
      if (i.kind === 'dir') await mkdir(to, { mode: 0o700 });
      else if (i.kind === 'link') await symlink(i.target, to);
      else await writeFile(to, i.data, { mode: i.exec ? 0o555 : 0o444, flag: 'wx' });
    }
    // Deepest folders first: a folder made read-only cannot get its children's modes changed after.
    for (const i of items.filter((x) => x.kind === 'dir').reverse()) await chmod(join(tmp, i.path), 0o555);
    if (await intact(dir, hash)) return copy;
    // A copy changed since it was made: moved aside first, so that the name is never a half-removed
    // folder for a start that looks it up at this moment.
    const stale = join(runRoot, `.stale-${randomBytes(6).toString('hex')}`);
    if (
      await rename(dir, stale).then(
        () => true,
        () => false,
      )
    )
      await releaseCopy(stale);
    await rename(tmp, dir);
    await chmod(dir, 0o555);
  } catch (err) {
    await releaseCopy(tmp);
    // Another start put the same copy in place meanwhile.
    if (await intact(dir, hash)) return copy;
    throw err;
  }
  await releaseCopy(tmp);
  return copy;
}

async function intact(dir: string, hash: string): Promise<boolean> {
  try {
    return (await hashDirectory(dir)).hash === hash;
  } catch {
    return false;
  }
}

/** Removes a copy (or all of them: the run folder): its read-only folders are made writable first. */
export async function releaseCopy(dir: string): Promise<void> {
  const open = async (d: string): Promise<void> => {
    const st = await lstat(d).catch(() => undefined);
    if (!st?.isDirectory()) return;
    await chmod(d, 0o700).catch(() => undefined);
    for (const n of await readdir(d).catch(() => [] as string[])) await open(join(d, n));
  };
  await open(dir);
  await rm(dir, { recursive: true, force: true });
}
