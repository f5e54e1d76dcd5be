import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../../src/store/audit/record.js';
import type { AuditVerifyResult } from '../../../src/store/audit/verify.js';
import { FileLabStore } from '../../../src/store/file-lab-store.js';
import { cli, cliJson, repoRoot, tempLab } from '../../support/cli.js';

/** `audit verify` and `audit tail` as a user runs them: real processes on a real log. */
describe('audit commands', () => {
  it('verify says ok on an intact log and names the edited entry (exit 6) on a tampered one', async () => {
    await using lab = await tempLab();
    const store = new FileLabStore(lab.home);
    for (let i = 0; i < 4; i++) await store.audit({ actor: 'cli', action: `test.${i}`, outcome: 'ok' });

    const ok = await cliJson<{ status: number; result: AuditVerifyResult }>(lab, ['audit', 'verify']);
    expect(ok.exitCode).toBe(0);
    expect(ok.json.result).toMatchObject({ ok: true, entries: 4 });
    const text = await cli(lab, ['audit', 'verify']);
    expect(text.stdout).toMatch(/ok: 4 entries, chain intact/);

    const file = join(lab.home, 'audit.jsonl');
    const lines = (await readFile(file, 'utf8')).trimEnd().split('\n');
    const victim = JSON.parse(lines[1] as string) as AuditRecord;
    lines[1] = JSON.stringify({ ...victim, outcome: 'denied' });
    await writeFile(file, `${lines.join('\n')}\n`);

    const bad = await cliJson<{ result: AuditVerifyResult }>(lab, ['audit', 'verify']);
    expect(bad.exitCode).toBe(6);
    expect(bad.json.result.problems).toEqual([
      expect.objectContaining({ index: 1, id: victim.id, kind: 'edited' }),
    ]);
    const badText = await cli(lab, ['audit', 'verify']);
    expect(badText.exitCode).toBe(6);
    expect(badText.stderr).toContain('[AUDIT_TAMPERED]');
    expect(badText.stderr).toContain(victim.id);
  });

  it('tail shows the last N entries, in text and JSON', async () => {
    await using lab = await tempLab();
    const store = new FileLabStore(lab.home);
    for (let i = 0; i < 5; i++)
      await store.audit({ actor: 'cli', action: `test.${i}`, target: `t${i}`, outcome: 'ok' });
    const r = await cliJson<{ result: AuditRecord[] }>(lab, ['audit', 'tail', '-n', '2']);
    expect(r.exitCode).toBe(0);
    expect(r.json.result.map((e) => e.action)).toEqual(['test.3', 'test.4']);
    const text = await cli(lab, ['audit', 'tail', '-n', '3']);
    expect(text.stdout.trim().split('\n')).toHaveLength(3);
    expect(text.stdout).toMatch(/#4 .*ok\s+cli {2}test\.4 {2}t4/);
    const usage = await cli(lab, ['audit', 'tail', '-n', 'many']);
    expect(usage.exitCode).toBe(2);
  });

  it('tail --follow --json prints entries written after it started, one JSON per line, and stops on SIGINT', async () => {
    await using lab = await tempLab();
    const store = new FileLabStore(lab.home);
    await store.audit({ actor: 'cli', action: 'before', outcome: 'ok' });
    const child = execa(
      process.execPath,
      [join(repoRoot, 'bin', 'run.js'), 'audit', 'tail', '-f', '--json'],
      {
        reject: false,
        env: { TRUSTED_MS_HOME: lab.home, NO_COLOR: '1' },
        timeout: 30_000,
      },
    );
    const seen: string[] = [];
    let waiting: { n: number; resolve: () => void } | undefined;
    child.stdout?.on('data', (chunk: Buffer) => {
      seen.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      if (waiting && seen.length >= waiting.n) waiting.resolve();
    });
    const waitFor = (n: number) =>
      new Promise<void>((resolve) => {
        waiting = { n, resolve };
        if (seen.length >= n) resolve();
      });
    await waitFor(1);
    const more = waitFor(3);
    await store.audit({ actor: 'cli', action: 'after.1', outcome: 'ok' });
    await store.audit({ actor: 'cli', action: 'after.2', outcome: 'denied', code: 'AUTH_FAILED' });
    await more;
    child.kill('SIGINT');
    const done = await child;
    expect(done.exitCode).toBe(0);
    expect(seen.map((l) => (JSON.parse(l) as AuditRecord).action)).toEqual(['before', 'after.1', 'after.2']);
  });
});
