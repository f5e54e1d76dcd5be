import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import type { LabExportResult } from '../../../src/export/lab-export.js';
import { cli, cliJson, tempLab } from '../../support/cli.js';
import { unknownFieldErrors, validateWithSchema } from '../../support/k8s-schema.js';

type Envelope = { status: number; result: LabExportResult; error?: { code: string } };

/** `lab export` as a user runs it: the built CLI writing into a temp folder. */
describe('lab export', () => {
  it('writes k8s manifests that validate, and refuses bad input with stable codes', async () => {
    await using lab = await tempLab();
    const out = join(lab.dir, 'k8s');
    const r = await cliJson<Envelope>(lab, [
      'lab',
      'export',
      '--format',
      'k8s',
      '--out',
      out,
      '--services',
      '5',
      '--replicas',
      '2',
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    const { result } = r.json;
    // signed feeds need a lab key the export does not carry: said in the posture, not dropped silently
    expect(result).toMatchObject({
      format: 'k8s',
      dir: out,
      posture: 'trusted -feeds:signed',
      replicas: 2,
    });
    expect(result.files).toEqual(
      expect.arrayContaining(['00-namespace.yaml', '40-deployments.yaml', 'SECRETS.md']),
    );
    expect(result.images.length).toBe(result.services + 2);
    const docs = [];
    for (const file of result.files.filter((f) => f.endsWith('.yaml'))) {
      for (const d of parseAllDocuments(await readFile(join(out, file), 'utf8'))) docs.push(d.toJSON());
    }
    expect(docs.length).toBe(Object.values(result.objects ?? {}).reduce((a, b) => a + b, 0));
    for (const d of docs) validateWithSchema(d);
    expect(unknownFieldErrors(docs)).toEqual([]);
    const dockerfile = await readFile(join(out, 'images', 'security', 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^FROM \$\{BASE\}$/m);
    expect(await readFile(join(out, 'SECRETS.md'), 'utf8')).toMatch(
      /kubectl -n trusted-ms create secret generic trusted-ms-ca /,
    );

    const again = await cliJson<Envelope>(lab, ['lab', 'export', '--format', 'k8s', '--out', out]);
    expect(again.exitCode).toBe(2);
    expect(again.json.error?.code).toBe('EXPORT_DIR_NOT_EMPTY');
    const forced = await cli(lab, ['lab', 'export', '--format', 'k8s', '--out', out, '--force']);
    expect(forced.exitCode, forced.stderr).toBe(0);
    expect(forced.stdout).toMatch(/^Wrote \d+ files to /);

    const unknown = await cli(lab, ['lab', 'export', '--format', 'helm', '--out', join(lab.dir, 'helm')]);
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toContain('[EXPORT_FORMAT_UNKNOWN]');
    const aFile = join(lab.dir, 'a-file');
    await writeFile(aFile, 'x');
    const blocked = await cli(lab, ['lab', 'export', '--format', 'compose', '--out', join(aFile, 'out')]);
    expect(blocked.exitCode).toBe(6);
    expect(blocked.stderr).toContain('[EXPORT_DIR_NOT_WRITABLE]');
    const onAFile = await cliJson<Envelope>(lab, ['lab', 'export', '--format', 'compose', '--out', aFile]);
    expect(onAFile.json.error?.code).toBe('EXPORT_DIR_NOT_WRITABLE');

    const help = await cli(lab, ['lab', 'export', '--help']);
    expect(help.stdout).toMatch(/EXAMPLES[\s\S]*lab export --format k8s --out \.\/k8s/);
    // seven CLI runs and a TypeScript program on a shared 2-core machine
  }, 180_000);

  it('writes a compose file whose only published port is the gateway on 127.0.0.1', async () => {
    await using lab = await tempLab();
    const out = join(lab.dir, 'compose');
    const r = await cliJson<Envelope>(lab, [
      'lab',
      'export',
      '--format',
      'compose',
      '--out',
      out,
      '--posture',
      'paper',
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    const compose = parse(await readFile(join(out, 'compose.yaml'), 'utf8')) as {
      services: Record<string, { ports?: { host_ip: string }[]; configs: { source: string }[] }>;
      configs: Record<string, { file: string }>;
    };
    expect(Object.keys(compose.services)).toHaveLength(22);
    expect(
      Object.entries(compose.services).flatMap(([n, s]) => (s.ports ?? []).map((p) => `${n} ${p.host_ip}`)),
    ).toEqual(['gateway 127.0.0.1']);
    // the configs it names are there, and are the parts' configs
    const config = JSON.parse(
      await readFile(join(out, compose.configs['accounts-config']?.file ?? ''), 'utf8'),
    );
    expect(config).toMatchObject({
      part: 'accounts',
      kind: 'service',
      posture: 'paper',
      securityUrl: 'http://security:8080',
    });
  });
});
