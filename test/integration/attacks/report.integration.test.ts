import { constants } from 'node:fs';
import { access, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderHtml } from '../../../src/attacks/report-html.js';
import type { AttackReport } from '../../../src/attacks/runner.js';
import { labDown } from '../../../src/lab/down.js';
import { labUp } from '../../../src/lab/up.js';
import { cli } from '../../support/cli.js';

/*
 * The report files of a real `attack simulate` run, opened by real tools: the HTML page in headless
 * Chromium (Debian's `chromium`, driven by playwright-core, which downloads no browser of its own),
 * the JUnit file in libxml2's `xmllint`. The run is the CLI against small labs, with the trusted lab
 * deliberately broken (proof check off) so the report holds real passes and a real failure.
 * Without Chromium or xmllint their tests are skipped, loudly; under CI=true that is a failure.
 */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const hasChromium = await access(CHROMIUM, constants.X_OK).then(
  () => true,
  () => false,
);
const hasXmllint = (await execa('xmllint', ['--version'], { reject: false })).exitCode === 0;
const inCi = process.env.CI === 'true';
for (const [missing, what, install] of [
  [!hasChromium, `the HTML report in Chromium (no executable at ${CHROMIUM})`, 'chromium'],
  [!hasXmllint, 'the JUnit report in xmllint (not on PATH)', 'libxml2-utils'],
] as const) {
  if (missing && !inCi) {
    console.warn(
      `\n!!! SKIPPED: ${what}.\n!!! Install it (apt-get install -y ${install}) to run it; CI=true turns this skip into a failure.\n`,
    );
  }
}

describe.runIf(inCi && !(hasChromium && hasXmllint))('the report tools in CI', () => {
  it('needs Chromium and xmllint', () => {
    throw new Error(
      `CI=true but ${[!hasChromium && `no Chromium at ${CHROMIUM}`, !hasXmllint && 'no xmllint'].filter(Boolean).join(' and ')}: the report tests must not be skipped`,
    );
  });
});

describe('report files in a folder that does not exist', () => {
  it.each(['--html', '--junit'])('%s: USAGE, exit 2, before any lab comes up', async (flag) => {
    const dir = await mkdtemp(join(tmpdir(), 'tms-report-bad-'));
    try {
      const r = await cli({ home: join(dir, 'home'), keys: join(dir, 'keys') }, [
        'attack',
        'simulate',
        '--all',
        '--posture',
        'all',
        flag,
        join(dir, 'missing', 'report'),
      ]);
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toContain('Error [USAGE]: cannot write');
      expect(r.stderr).not.toContain('bringing a lab up');
      expect(r.stderr).not.toMatch(/\n\s+at /);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

const SCENARIO_IDS = ['masquerade.stolen-ticket', 'privilege.cross-database'];
const POSTURE_COUNT = 3;

describe.runIf(hasChromium || hasXmllint)('the report files of a real run', () => {
  let dir: string;
  let home: string;
  let run: { exitCode: number; stdout: string; stderr: string };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tms-report-'));
    home = join(dir, 'home');
    // TEST ONLY: a trusted lab without the proof check, so masquerade.stolen-ticket fails there.
    await labUp({ home, posture: 'trusted', services: 2, without: ['request:bound'] });
    run = await cli(
      { home, keys: join(dir, 'keys') },
      [
        'attack',
        'simulate',
        ...SCENARIO_IDS,
        '--posture',
        'all',
        '--services',
        '2',
        '--junit',
        join(dir, 'attacks.xml'),
        '--html',
        join(dir, 'attacks.html'),
      ],
      { timeoutMs: 150_000 },
    );
  }, 180_000);

  afterAll(async () => {
    if (home) await labDown(home).catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('ran: exit 1 for the broken defence, progress on stderr while the labs came up', () => {
    expect(run.stderr).toContain('none: bringing a lab up (2 services)');
    expect(run.stderr).toContain('none: starting the gateway');
    // The lab running in the home has a defence removed: every line and report names it.
    expect(run.stderr).toContain('trusted -request:bound: using the running lab');
    expect(run.stderr).toContain(
      'trusted -request:bound: masquerade.stolen-ticket succeeded, expected blocked',
    );
    expect(run.stdout).toContain('6 runs, 5 as expected, 1 not');
    expect(run.exitCode).toBe(1);
  });

  it.runIf(hasXmllint)(
    'wrote JUnit that libxml2 parses: a testcase per scenario × posture, the failure with its evidence',
    async () => {
      const file = join(dir, 'attacks.xml');
      const lint = await execa('xmllint', ['--noout', file], { reject: false });
      expect(lint.stderr).toBe('');
      expect(lint.exitCode).toBe(0);
      const xpath = async (expr: string) => (await execa('xmllint', ['--xpath', expr, file])).stdout.trim();
      expect(await xpath('count(//testsuite)')).toBe(String(POSTURE_COUNT));
      expect(await xpath('count(//testcase)')).toBe(String(SCENARIO_IDS.length * POSTURE_COUNT));
      expect(await xpath('count(//testcase/failure)')).toBe('1');
      expect(await xpath('string(//testcase[failure]/@name)')).toBe(
        'masquerade.stolen-ticket [trusted -request:bound]',
      );
      expect(await xpath('string(//testcase/failure/@message)')).toBe('expected blocked, got succeeded');
      const evidence = await xpath('string(//testcase/failure)');
      expect(evidence).toMatch(/-> 200 \(data obtained\)/);
      expect(evidence).toContain('/svc/customers/');
    },
  );

  describe.runIf(hasChromium)('the HTML page in headless Chromium', () => {
    let browser: Browser;
    beforeAll(async () => {
      browser = await chromium.launch({ executablePath: CHROMIUM });
    }, 60_000);
    afterAll(async () => {
      await browser?.close();
    });

    /** Opens a file as a user would, collecting every console message, page error and request. */
    async function open(file: string) {
      const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
      const problems: string[] = [];
      const requests: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
      });
      page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
      page.on('request', (r) => requests.push(r.url()));
      await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
      return { page, problems, requests };
    }

    it('opens without errors, loads nothing else, shows the matrix and the chart; screenshot', async () => {
      const file = join(dir, 'attacks.html');
      const { page, problems, requests } = await open(file);
      expect(problems).toEqual([]);
      expect(requests).toEqual([pathToFileURL(file).href]);
      expect(await page.locator('#matrix tbody tr').count()).toBe(SCENARIO_IDS.length);
      expect(await page.locator('#matrix tbody td.cell').count()).toBe(SCENARIO_IDS.length * POSTURE_COUNT);
      expect(await page.locator('#matrix thead th').allTextContents()).toEqual([
        'scenario',
        'none',
        'paper',
        'trusted -request:bound',
      ]);
      const failing = page.locator('#matrix td.cell.fail');
      expect(await failing.count()).toBe(1);
      expect(await failing.getAttribute('data-outcome')).toBe('succeeded');
      expect(await page.locator('#verdict').textContent()).toContain('1 of 6 runs did not match');
      expect(await page.locator('#chart rect').count()).toBeGreaterThan(3);
      expect(await page.locator('#chart').isVisible()).toBe(true);
      expect(await page.locator('#durations rect').count()).toBe(SCENARIO_IDS.length * POSTURE_COUNT);
      // The style is applied (its CSP hash matched): the failing cell has its red background.
      expect(
        await failing.evaluate((el) => el.ownerDocument.defaultView?.getComputedStyle(el).backgroundColor),
      ).toBe('rgb(255, 235, 233)');
      const shot = join(dir, 'report.png');
      await page.screenshot({ path: shot, fullPage: true });
      const png = await readFile(shot);
      expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
      expect(png.readUInt32BE(16)).toBe(1200); // IHDR width
      expect(png.readUInt32BE(20)).toBeGreaterThan(900); // a full page, taller than the viewport
      await page.close();
    });

    it('shows hostile evidence as text: a <script> in a note neither runs nor trips the CSP', async () => {
      // A real run's report (the broken trusted lab again), with one attempt's note made hostile.
      const json = await cli({ home, keys: join(dir, 'keys') }, [
        'attack',
        'simulate',
        'masquerade.stolen-ticket',
        '--posture',
        'trusted',
        '--json',
      ]);
      const real = (JSON.parse(json.stdout) as { result: AttackReport }).result;
      const attempt = real.results[0]?.evidence.attempts[0];
      if (!attempt) throw new Error('the run recorded no attempt');
      attempt.note = '<script>document.title="pwned"</script><img src=x onerror="document.title=1">';
      const file = join(dir, 'hostile.html');
      await writeFile(file, renderHtml(real));
      const { page, problems, requests } = await open(file);
      expect(problems).toEqual([]);
      expect(requests).toEqual([pathToFileURL(file).href]);
      expect(await page.locator('script, img').count()).toBe(0);
      expect(await page.title()).toContain('trusted-ms attack report');
      expect(await page.locator('table.attempts td', { hasText: '<script>' }).first().textContent()).toBe(
        attempt.note,
      );
      await page.close();
    });
  });
});
