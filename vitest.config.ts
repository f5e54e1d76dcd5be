import { defineConfig } from 'vitest/config';

// Tiers are visible in file names so each can run alone: `npm run test:unit`, `test:integration`, `test:e2e`.
// In one run they go in turn (sequence.groupOrder): unit, then the process labs, then the Docker labs,
// so that the 2 cores are never shared by a process lab and a container lab at once.
/*
 * Process-lab files whose time goes in waiting on the clock, not on the cores: a lab serving a few
 * requests a second through six identity lifetimes (2 minutes), and labs on a stepped clock held
 * over watchman rounds and lifetimes (88 s of sleeps, 5 minutes in all), a 2-service lab whose
 * control plane is held still past its feed bound (26 s), a CLI waiting out a stopped security
 * service (26 s). `npm test` runs them beside the tiers, which saves CI about 7 minutes; the load they add is an idle lab's, well below the two
 * busy loops that the DoS verdicts are shown to hold under (dos-busy.integration).
 */
const WAITING = [
  'test/integration/lab/identity-renewal.integration.test.ts',
  'test/integration/faults/clock.integration.test.ts',
  'test/integration/services/feeds.integration.test.ts',
  'test/integration/hardening/security-stopped.integration.test.ts',
];

export default defineConfig({
  test: {
    // The run's own temporary folder; a lab a timed-out test left running is taken down at the end.
    globalSetup: ['test/support/leftover-labs.ts'],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.unit.test.ts'],
          sequence: { groupOrder: 0 },
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.integration.test.ts'],
          exclude: WAITING,
          sequence: { groupOrder: 1 },
          // Each file starts real processes (a 23-part lab, 50 CLI processes at once): one file at a
          // time keeps them from starving each other of the 2 cores.
          fileParallelism: false,
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        test: {
          // `npm test` runs it in a vitest run of its own beside the tiers (scripts/test-lanes.mjs).
          name: 'integration-waiting',
          include: WAITING,
          sequence: { groupOrder: 1 },
          fileParallelism: false,
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.e2e.test.ts'],
          sequence: { groupOrder: 2 },
          // Real containers on a real engine (Docker): one file at a time, like the integration tier.
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 240_000,
        },
      },
    ],
  },
});
