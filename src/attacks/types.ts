import type { KeyObject } from 'node:crypto';
import type { Dispatcher } from 'undici';
import { POSTURES, type Posture } from '../defences/posture.js';
import { type Defences, PRESETS } from '../defences/presets.js';
import type { EdgeView } from '../kernel/edge-client.js';
import type { LabState } from '../kernel/lab-state.js';

/**
 * What an attack achieved, judged from evidence only; `inconclusive` when the scenario's own
 * measurements cannot carry a verdict (a flood the attacker could not deliver, a baseline that did
 * not hold), the reason in `Evidence.inconclusive`. Never expected, so never a pass: the runner runs
 * such a scenario once more before it reports it.
 */
export type Verdict = 'succeeded' | 'blocked' | 'inconclusive';

/** What a scenario may declare as its expected outcome in a posture. */
export type ExpectedVerdict = Exclude<Verdict, 'inconclusive'>;

/** One thing the attacker tried and what the lab answered: the evidence a verdict rests on. */
export interface Attempt {
  /** what was tried, in a few words, e.g. "GET customers record through the gateway with the stolen ticket" */
  action: string;
  /** where it went: a URL of the lab (never a secret) */
  target: string;
  /** the HTTP status, when an answer came */
  status?: number;
  /** the lab's refusal code (`code` of a 4xx body) or the client-side error code */
  code?: string;
  /** true when the answer carried the protected data the attack was after */
  gotData: boolean;
  /** anything else worth showing, short */
  note?: string;
}

export interface Evidence {
  attempts: Attempt[];
  /** free-form measurements (counts, rates, latencies) */
  measurements?: Record<string, number>;
  /** with the verdict `inconclusive`: why these measurements cannot carry a verdict */
  inconclusive?: string;
}

/** A user of the lab a scenario acts as or against; the runner makes sure each exists with a key. */
export interface LabUser {
  name: string;
  role: string;
  password: string;
  privateKey: KeyObject;
}

/** What every lifecycle step of a scenario gets. `scratch` carries state from one step to the next. */
export interface ScenarioContext {
  /** with the running lab's time when the runner knows its home (its clients judge the gateway's certificate on it too) */
  lab: LabState & EdgeView;
  /** the preset the lab started from: which expectation applies */
  posture: Posture;
  /** the defences in force (the preset less `--without`): what the attacker is up against */
  defences: Defences;
  /** the victim: a user with a broad role (admin) */
  victim: LabUser;
  /** the attacker's own account: a low role (analyst) */
  attacker: LabUser;
  /** the attacker's own HTTP client (another loopback address on Linux); the runner closes it */
  client: Dispatcher;
  /** every request of a scenario is bounded by this (ms) */
  timeoutMs: number;
  evidence: Evidence;
  scratch: Record<string, unknown>;
}

/**
 * One attack technique (Stratus Red Team style): metadata, the outcome expected in each posture,
 * and the lifecycle setup → detonate → judge → revert. `judge` looks at `ctx.evidence` only.
 */
export interface Scenario {
  id: string;
  title: string;
  /** the paper's attack number (1 masquerade ... 6 man-in-the-middle) */
  paperAttack: 1 | 2 | 3 | 4 | 5 | 6;
  /** MITRE ATT&CK technique id, e.g. T1078 */
  technique: string;
  /** what the attacker does, in a sentence or three */
  description: string;
  /** what evidence decides the verdict */
  evidence: string;
  expected: Record<Posture, ExpectedVerdict>;
  /**
   * When the outcome depends on the lab's shape rather than on its defences (how many security
   * service replicas it runs): the expectation in this lab, used instead of `expected`, which then
   * states the default lab's.
   */
  expectedIn?(lab: Pick<LabState, 'posture' | 'parts'>): ExpectedVerdict;
  /**
   * The runtimes the attack exists on, when not every one: on another it is not run, and the run
   * says so (it is not a pass). Why, in a sentence.
   */
  onlyOn?: { runtimes: readonly LabState['runtime'][]; why: string };
  setup?(ctx: ScenarioContext): Promise<void>;
  detonate(ctx: ScenarioContext): Promise<void>;
  judge(ctx: ScenarioContext): Verdict;
  revert?(ctx: ScenarioContext): Promise<void>;
}

/** Scenarios of the DESIGN.md catalog that are not built yet: listed, never run, never given a verdict. */
export interface PlannedScenario {
  id: string;
  title: string;
  paperAttack: 1 | 2 | 3 | 4 | 5 | 6;
  technique: string;
  /** what is missing before it can run */
  missing: string;
}

/** Whether the scenario exists on the runtime the lab runs on (Scenario.onlyOn). */
export function appliesTo(scenario: Scenario, lab: Pick<LabState, 'runtime'>): boolean {
  return scenario.onlyOn === undefined || scenario.onlyOn.runtimes.includes(lab.runtime);
}

/** The default judge: the attack succeeded when any attempt got the protected data. */
export function judgeByData(ctx: ScenarioContext): Verdict {
  return ctx.evidence.attempts.some((a) => a.gotData) ? 'succeeded' : 'blocked';
}

/**
 * Expected outcomes decided by the defences each posture's preset has, not by its name: `f` says
 * what the defences in force should make of the attack.
 */
export function byDefences(f: (d: Defences) => ExpectedVerdict): Record<Posture, ExpectedVerdict> {
  return Object.fromEntries(POSTURES.map((p) => [p, f(PRESETS[p])])) as Record<Posture, ExpectedVerdict>;
}

/** What a scenario expects in this lab: its own say for the lab's shape, else its posture's. */
export function expectationIn(scenario: Scenario, lab: Pick<LabState, 'posture' | 'parts'>): ExpectedVerdict {
  return scenario.expectedIn?.(lab) ?? scenario.expected[lab.posture];
}
