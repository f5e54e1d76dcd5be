import { readFileSync, rmSync } from 'node:fs';

/**
 * The inside of a program the lab runs in a container of its own (edge-program.ts): its input is a
 * 0600 file put into the container before it starts (session keys, passwords: never on a command
 * line, in the environment or in a log), read once and deleted; what it reports goes to stdout as
 * one JSON object per line, which the host reads from the container's output.
 */
export const PROGRAM_INPUT_ENV = 'TMS_PROGRAM_INPUT';

export function readProgramInput<T>(): T {
  const file = process.env[PROGRAM_INPUT_ENV];
  if (!file) throw new Error(`${PROGRAM_INPUT_ENV} is not set`);
  const input = JSON.parse(readFileSync(file, 'utf8')) as T;
  rmSync(file, { force: true });
  return input;
}

export function emit(message: object): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}
