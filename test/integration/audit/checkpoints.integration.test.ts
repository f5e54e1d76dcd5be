import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { logText, recomputeChain } from '../../../src/attacks/audit-rewrite.js';
import { labDown } from '../../../src/lab/down.js';
import { auditKeyFiles, readCheckpoints } from '../../../src/store/audit/checkpoint-files.js';
import { parseLine } from '../../../src/store/audit/record.js';
import { openUserAdmin } from '../../../src/users/admin.js';
import { cli, cliJson } from '../../support/cli.js';
import { startLab } from '../../support/lab.js';

/*
 * Signed checkpoints as a user meets them: a trusted lab signs heads with a key in the key folder
 * (not the lab home), the last at lab down; `audit checkpoint --out` exports one; `audit verify`
 * passes on the log as written and catches a rewrite with a recomputed chain, a cut-off tail and a
 * forged checkpoint, each with its code and exit 6; with no audit key the same rewrite passes.
 */
describe('signed audit checkpoints (trusted process lab, CLI)', () => {
  it('signs at lab down; verify catches rewrite, truncation and a forged checkpoint', async () => {
    await using lab = await startLab('trusted', 1);
    const admin = await openUserAdmin(lab.home);
    await admin.addUser({ name: 'mallory', role: 'admin', password: 'mallory-pw-123' });
    await labDown(lab.home);

    const files = auditKeyFiles(lab.keys, lab.home);
    expect((await stat(files.privateFile)).mode & 0o777).toBe(0o600);
    expect((await stat(files.checkpointsFile)).mode & 0o777).toBe(0o600);
    // nothing of the audit key in the lab home
    expect(
      (await readFile(join(lab.home, 'lab', 'parts', 'security.json'), 'utf8').catch(() => '')).includes(
        'BEGIN',
      ),
    ).toBe(false);
    const logFile = join(lab.home, 'audit.jsonl');
    const original = await readFile(logFile, 'utf8');
    const records = original.split('\n').filter(Boolean).map(parseLine);
    const checkpoints = await readCheckpoints(files.checkpointsFile);
    // lab down signed the whole log, mallory's user.add included
    expect(checkpoints[checkpoints.length - 1]?.size).toBe(records.length);
    expect(records.some((r) => r.action === 'user.add' && r.target === 'mallory')).toBe(true);

    const kept = join(lab.home, '..', 'kept.json');
    const exported = await cli(lab, ['audit', 'checkpoint', '--out', kept]);
    expect(exported.exitCode, exported.stderr).toBe(0);
    expect((await stat(kept)).mode & 0o777).toBe(0o600);
    const ok = await cliJson<{ result: { ok: boolean; checkpoints: { checked: number } } }>(lab, [
      'audit',
      'verify',
      '--checkpoint',
      kept,
    ]);
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(ok.json.result.ok).toBe(true);
    expect(ok.json.result.checkpoints.checked).toBe(checkpoints.length + 1);

    // The attack: mallory's records out, the chain recomputed.
    await writeFile(logFile, logText(recomputeChain(records.filter((r) => r.target !== 'mallory'))));
    const chainOnly = await cli(lab, ['audit', 'verify'], {
      env: { TRUSTED_MS_KEYS: join(lab.keys, 'none') },
    });
    expect(chainOnly.exitCode, 'without the audit key the chain alone is fooled').toBe(0);
    const rewritten = await cli(lab, ['audit', 'verify', '--checkpoint', kept]);
    expect(rewritten.exitCode).toBe(6);
    expect(rewritten.stderr).toMatch(/^Error \[AUDIT_(TAMPERED|TRUNCATED)\]: /);
    expect(rewritten.stderr).not.toMatch(/\n\s+at /);
    const json = await cliJson<{ result: { ok: boolean; code: string } }>(lab, ['audit', 'verify']);
    expect(json.exitCode).toBe(6);
    expect(json.json.result).toMatchObject({ ok: false });
    expect(json.json.result.code).toMatch(/^AUDIT_(TAMPERED|TRUNCATED)$/);

    // A cut-off tail: the chain is intact, the checkpoint saw more.
    await writeFile(logFile, logText(records.slice(0, records.length - 2)));
    const cut = await cli(lab, ['audit', 'verify', '--checkpoint', kept]);
    expect(cut.exitCode).toBe(6);
    expect(cut.stderr).toMatch(/^Error \[AUDIT_TRUNCATED\]: .*2 were cut off/);

    // A checkpoint edited to match the forged log does not verify.
    await writeFile(logFile, original);
    const c = JSON.parse(await readFile(kept, 'utf8'));
    await writeFile(kept, JSON.stringify({ ...c, size: c.size - 1 }));
    const forged = await cli(lab, ['audit', 'verify', '--checkpoint', kept]);
    expect(forged.exitCode).toBe(6);
    expect(forged.stderr).toMatch(/^Error \[AUDIT_CHECKPOINT_INVALID\]: /);
    await writeFile(kept, 'not json');
    expect((await cli(lab, ['audit', 'verify', '--checkpoint', kept])).stderr).toMatch(
      /AUDIT_CHECKPOINT_INVALID/,
    );

    // No audit key for the home: nothing to export.
    const missing = await cli(lab, ['audit', 'checkpoint'], {
      env: { TRUSTED_MS_KEYS: join(lab.keys, 'none') },
    });
    expect(missing.exitCode).toBe(6);
    expect(missing.stderr).toMatch(/^Error \[AUDIT_CHECKPOINT_MISSING\]: /);

    const help = await cli(lab, ['audit', 'verify', '--help']);
    expect(help.stdout).toMatch(/--checkpoint/);
    expect(help.stdout).toMatch(/EXAMPLES/);
  }, 180_000);
});
