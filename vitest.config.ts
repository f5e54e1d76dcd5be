import { defineConfig } from 'vitest/config';

// Tiers are visible in file names so each can run alone: `npm run test:unit`, `test:integration`, `test:e2e`.
// In one run they go in turn (sequence.groupOrder): unit, then the process labs, then the Docker labs,
// so that the 2 cores are never shared by a process lab and a container lab at once.
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
