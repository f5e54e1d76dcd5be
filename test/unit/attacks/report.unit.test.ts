import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { stripVTControlCharacters } from 'node:util';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import { renderJunit, renderMatrix } from '../../../src/attacks/report.js';
import { renderHtml } from '../../../src/attacks/report-html.js';
import type { AttackReport } from '../../../src/attacks/runner.js';

/*
 * The renderers on a report saved from a real run of the CLI, made with:
 *   node bin/run.js attack simulate masquerade.stolen-ticket privilege.cross-database \
 *     --posture all --services 2 --home "$(mktemp -d)" --json > test/fixtures/attack-report.json
 * Where a test needs hostile evidence (an HTTP answer the attacker controls), it edits a copy.
 */
const saved = JSON.parse(
  await readFile(new URL('../../fixtures/attack-report.json', import.meta.url), 'utf8'),
) as { result: AttackReport };

function report(): AttackReport {
  return structuredClone(saved.result);
}

const HOSTILE = `</td></tr></table><script>alert("x")</script><img src=https://evil.example/x onerror=alert(1)>&amp;'`;

/** The report with attacker-controlled text in the places evidence carries text, and one mismatch. */
function hostileReport(): AttackReport {
  const r = report();
  const first = r.results[0];
  if (!first) throw new Error('the saved report has no results');
  const attempt = first.evidence.attempts[0];
  if (!attempt) throw new Error('the saved report has no attempts');
  attempt.note = HOSTILE;
  attempt.code = '<b>CODE</b>';
  attempt.action = `${attempt.action} \u0001\u001b]]>`;
  first.evidence.measurements = { '<script>k</script>': 1.5 };
  first.expected = first.outcome === 'blocked' ? 'succeeded' : 'blocked';
  first.passed = false;
  r.summary = { ...r.summary, passed: r.summary.passed - 1, failed: r.summary.failed + 1 };
  r.ok = false;
  return r;
}

describe('the HTML report', () => {
  it('escapes evidence: a <script> in a note stays text, nothing from it becomes markup', () => {
    const html = renderHtml(hostileReport());
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/<img/i);
    expect(html).not.toContain('<b>CODE');
    expect(html).toContain(
      '&lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;',
    );
    expect(html).toContain('&amp;amp;&#39;');
    expect(html).toContain('&lt;script&gt;k&lt;/script&gt;');
  });

  it('loads nothing from anywhere: a CSP forbidding remote loads, the inline style allowed by its hash', () => {
    const html = renderHtml(report());
    const csp = /<meta http-equiv="Content-Security-Policy" content="([^"]+)">/.exec(html)?.[1] ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).not.toContain('unsafe-inline');
    const css = /<style>([\s\S]*?)<\/style>/.exec(html)?.[1] ?? '';
    const hash = createHash('sha256').update(css).digest('base64');
    expect(csp).toContain(`style-src 'sha256-${hash}'`);
    // The only URL in an attribute is the SVG namespace, an identifier that is never fetched (the
    // lab URLs of the evidence are text).
    const urls = html.match(/="[a-z]+:[^"]*"/gi) ?? [];
    expect(urls.length).toBeGreaterThan(0);
    expect(new Set(urls)).toEqual(new Set(['="http://www.w3.org/2000/svg"']));
    expect(html.match(/\b(?:src|href)="([^"]*)"/g)?.every((a) => a.startsWith('href="#ev-'))).toBe(true);
    expect(html).not.toMatch(/<(script|link|iframe|object|embed)\b/i);
  });

  it('has the matrix, one row per scenario and one cell per posture, each linking to its evidence', () => {
    const r = report();
    const html = renderHtml(r);
    const ids = [...new Set(r.results.map((x) => x.id))];
    const postures = r.postures.map((p) => p.posture);
    const tbody = /<table id="matrix">[\s\S]*?<tbody>([\s\S]*?)<\/tbody>/.exec(html)?.[1] ?? '';
    const rows = tbody.split('</tr>').filter((x) => x.includes('<tr>'));
    expect(rows).toHaveLength(ids.length);
    for (const row of rows) expect(row.match(/<td class="cell/g)).toHaveLength(postures.length);
    for (let i = 0; i < r.results.length; i++) {
      expect(html).toContain(`href="#ev-${i}"`);
      expect(html).toContain(`<details id="ev-${i}"`);
    }
    expect(html).toContain(r.environment.node);
    for (const p of r.postures) expect(html).toContain(p.labId);
  });

  it('marks a mismatch as a failure, in the banner, the matrix and the evidence', () => {
    const html = renderHtml(hostileReport());
    expect(html).toContain('<p class="banner bad" id="verdict">1 of 6 runs did not match');
    expect(html.match(/<td class="cell fail"/g)).toHaveLength(1);
    expect(html.match(/<details id="ev-\d+" class="evidence fail" open>/g)).toHaveLength(1);
  });
});

describe('the JUnit report', () => {
  const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '' });
  type Case = { name: string; classname: string; failure?: { message: string; '#text': string } };
  type Suite = { name: string; tests: string; failures: string; testcase: Case | Case[] };
  const suites = (xml: string): Suite[] => {
    const doc = parser.parse(xml) as { testsuites: { testsuite: Suite | Suite[] } };
    return [doc.testsuites.testsuite].flat();
  };

  it('is well-formed XML with one testcase per scenario × posture', () => {
    const r = report();
    const xml = renderJunit(r);
    expect(XMLValidator.validate(xml)).toBe(true);
    const cases = suites(xml).flatMap((s) => [s.testcase].flat());
    expect(cases.map((c) => c.name).sort()).toEqual(r.results.map((x) => `${x.id} [${x.posture}]`).sort());
    expect(cases.filter((c) => c.failure)).toEqual([]);
  });

  it('stays well-formed with hostile evidence, and a failure carries the evidence', () => {
    const r = hostileReport();
    const xml = renderJunit(r);
    expect(XMLValidator.validate(xml)).toBe(true);
    expect(xml).not.toContain('\u0001');
    const failed = suites(xml)
      .flatMap((s) => [s.testcase].flat())
      .filter((c) => c.failure);
    expect(failed).toHaveLength(1);
    const first = r.results[0];
    expect(failed[0]?.name).toBe(`${first?.id} [${first?.posture}]`);
    expect(failed[0]?.failure?.message).toBe(`expected ${first?.expected}, got ${first?.outcome}`);
    const text = failed[0]?.failure?.['#text'] ?? '';
    expect(text).toContain(first?.evidence.attempts[0]?.target);
    expect(text).toContain('<script>alert("x")</script>');
    expect(text).toContain('<script>k</script> = 1.5');
  });
});

/** The saved report with its first cell inconclusive on both runs, and its second judged on a second run. */
function inconclusiveReport(): AttackReport {
  const r = report();
  const [first, second] = r.results;
  if (!first || !second) throw new Error('the saved report has fewer than two results');
  first.outcome = 'inconclusive';
  first.passed = false;
  first.evidence.inconclusive = 'the flood was not delivered: the attacker sent 12/s <starved>';
  first.rerunAfter = 'the baseline did not hold';
  second.rerunAfter = 'the flood slowed no one & no defence engaged';
  r.summary = { ...r.summary, passed: r.summary.passed - 1, failed: r.summary.failed + 1 };
  r.ok = false;
  return r;
}

describe('an inconclusive cell, in every format', () => {
  it('is not a pass in the terminal table, which says why and which cells were run twice', () => {
    const r = inconclusiveReport();
    const text = stripVTControlCharacters(renderMatrix(r));
    const [first, second] = r.results;
    expect(text).toContain('inconclusive~!');
    expect(text).toContain(`${r.summary.total} runs, ${r.summary.passed} as expected, 1 not`);
    expect(text).toContain(
      `✗ ${first?.id} in ${first?.posture}: expected ${first?.expected}, got inconclusive (the flood was not delivered: the attacker sent 12/s <starved>)`,
    );
    expect(text).toContain(
      `~ ${second?.id} in ${second?.posture}: run again after an inconclusive first run`,
    );
  });

  it('is a JUnit failure of its own type, with the reason', () => {
    const xml = renderJunit(inconclusiveReport());
    expect(XMLValidator.validate(xml)).toBe(true);
    expect(xml).toContain(
      '<failure message="expected succeeded, got inconclusive (the flood was not delivered: the attacker sent 12/s &lt;starved&gt;)" type="Inconclusive">',
    );
    expect(xml).toContain('inconclusive: the flood was not delivered');
    expect(xml).toContain(
      'run again after an inconclusive first run: the flood slowed no one &amp; no defence engaged',
    );
  });

  it('is a failed cell of its own color in the HTML, its reason in the evidence, counted in the chart', () => {
    const html = renderHtml(inconclusiveReport());
    expect(html.match(/<td class="cell fail" data-outcome="inconclusive"/g)).toHaveLength(1);
    expect(html).toContain('<span class="inconclusive">inconclusive</span>');
    expect(html).toContain('No verdict: the flood was not delivered: the attacker sent 12/s &lt;starved&gt;');
    expect(html).toContain(
      'the first run was inconclusive (the flood slowed no one &amp; no defence engaged)',
    );
    expect(html).toMatch(/<title>[a-z]+: 1 inconclusive<\/title>/);
  });

  it('is in the JSON as the outcome, with the reason in the evidence', () => {
    const json = JSON.parse(JSON.stringify(inconclusiveReport())) as AttackReport;
    expect(json.results[0]).toMatchObject({
      outcome: 'inconclusive',
      passed: false,
      rerunAfter: 'the baseline did not hold',
      evidence: { inconclusive: expect.stringContaining('not delivered') },
    });
  });
});

describe('a scenario that does not exist on the lab runtime', () => {
  it('is listed in the terminal matrix as not run, with why, rather than left out silently', () => {
    const r = report();
    r.notApplicable = [
      { id: 'attestation.env-injection', variant: 'trusted', why: 'no CLI pass-through reaches a container' },
    ];
    const text = stripVTControlCharacters(renderMatrix(r));
    expect(text).toContain(
      '- attestation.env-injection in trusted: not run, not applicable on this runtime (no CLI pass-through reaches a container)',
    );
    expect(stripVTControlCharacters(renderMatrix(report()))).not.toContain('not applicable');
  });
});
