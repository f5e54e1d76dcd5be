import { createReadStream, readFileSync } from 'node:fs';
import { lstat, readdir, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pack } from 'tar-stream';

/** One entry of an archive the lab sends to the engine. */
export type TarEntry =
  | { type: 'directory'; name: string; mode?: number }
  | { type: 'file'; name: string; from: string; mode: number; size: number }
  | { type: 'symlink'; name: string; target: string }
  /** bytes held in memory (a secret that never touches this host's disk), owned by `uid`:`gid` */
  | { type: 'data'; name: string; data: Buffer; mode: number; uid?: number; gid?: number };

const MTIME = new Date(0);
const SMALL_FILE = 1024 * 1024;

/** Streams the entries as a tar archive, file contents read as they go (never all in memory). */
export function packTar(entries: TarEntry[]): Readable {
  const p = pack();
  void (async () => {
    try {
      for (const e of entries) {
        const header = { name: e.name, mtime: MTIME, uid: 0, gid: 0 };
        if (e.type === 'directory') {
          await new Promise<void>((res, rej) =>
            p.entry({ ...header, type: 'directory', mode: e.mode ?? 0o755 }, (err) =>
              err ? rej(err) : res(),
            ),
          );
        } else if (e.type === 'symlink') {
          await new Promise<void>((res, rej) =>
            p.entry({ ...header, type: 'symlink', linkname: e.target, mode: 0o777 }, (err) =>
              err ? rej(err) : res(),
            ),
          );
        } else if (e.type === 'data') {
          await new Promise<void>((res, rej) =>
            p.entry(
              {
                ...header,
                uid: e.uid ?? 0,
                gid: e.gid ?? 0,
                type: 'file',
                mode: e.mode,
                size: e.data.length,
              },
              e.data,
              (err) => (err ? rej(err) : res()),
            ),
          );
        } else if (e.size <= SMALL_FILE) {
          // Small files in one read: a stream per file made packing node_modules ~10x slower.
          const body = readFileSync(e.from);
          await new Promise<void>((res, rej) =>
            p.entry({ ...header, type: 'file', mode: e.mode, size: body.length }, body, (err) =>
              err ? rej(err) : res(),
            ),
          );
        } else {
          await new Promise<void>((res, rej) => {
            const sink = p.entry({ ...header, type: 'file', mode: e.mode, size: e.size }, (err) =>
              err ? rej(err) : res(),
            );
            createReadStream(e.from).on('error', rej).pipe(sink);
          });
        }
      }
      p.finalize();
    } catch (err) {
      p.destroy(err as Error);
    }
  })();
  return p as unknown as Readable;
}

/** A host file as an archive entry at `name`, symlinks followed (the archive holds the content). */
export async function fileEntry(name: string, from: string, mode?: number): Promise<TarEntry> {
  const st = await stat(from);
  return { type: 'file', name, from, mode: mode ?? st.mode & 0o777, size: st.size };
}

/**
 * A host folder's tree under `prefix`: folders, regular files with their modes, symlinks as
 * symlinks. `skip` names folders left out wherever they appear (e.g. nested `node_modules`).
 */
export async function treeEntries(
  dir: string,
  prefix: string,
  skip: readonly string[] = [],
): Promise<TarEntry[]> {
  const entries: TarEntry[] = [{ type: 'directory', name: prefix }];
  const walk = async (abs: string, rel: string): Promise<void> => {
    const names = (await readdir(abs)).sort();
    for (const n of names) {
      const from = join(abs, n);
      const name = `${rel}/${n}`;
      const st = await lstat(from);
      if (st.isDirectory()) {
        if (skip.includes(n)) continue;
        entries.push({ type: 'directory', name, mode: st.mode & 0o777 });
        await walk(from, name);
      } else if (st.isFile())
        entries.push({ type: 'file', name, from, mode: st.mode & 0o777, size: st.size });
      else if (st.isSymbolicLink()) entries.push({ type: 'symlink', name, target: await readlink(from) });
    }
  };
  await walk(dir, prefix);
  return entries;
}
