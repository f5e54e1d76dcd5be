import { join } from 'node:path';
import type { LockoutPersistence, SmartLockoutState } from '../defences/smart-lockout.js';
import { TrustedMsError } from '../errors.js';
import { JsonFileStore } from './json-file-store.js';
import type { Validator } from './schema.js';

/**
 * The smart lock-out's state (src/defences/smart-lockout.ts) in `<home>/login-throttle.json`, apart
 * from store.json: it changes with attacks (at most once a second, see SmartLockout), and
 * rewriting every user record that often would cost each admin write a longer lock wait. Written
 * under the store's file lock like every lab file (lowdb alone races, ENVIRONMENT.md), by the
 * security service only.
 */
export const LOGIN_THROTTLE_FILE = 'login-throttle.json';

interface ThrottleFile {
  version: 1;
  state: SmartLockoutState;
}

const empty = (): ThrottleFile => ({ version: 1, state: { pairs: {}, sources: {}, familiar: {} } });

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;

function failures(v: unknown): boolean {
  return (
    isObject(v) &&
    Object.values(v).every(
      (f) => isObject(f) && finite(f.count) && finite(f.last) && finite(f.blockedUntil) && finite(f.blockMs),
    )
  );
}

const validate: Validator<ThrottleFile> = (raw, file) => {
  const s = isObject(raw) && raw.version === 1 && isObject(raw.state) ? raw.state : undefined;
  if (
    s === undefined ||
    !failures(s.pairs) ||
    !failures(s.sources) ||
    !isObject(s.familiar) ||
    !Object.values(s.familiar).every(finite)
  ) {
    throw new TrustedMsError('STORE_CORRUPT', `${file} is not a login throttle file`, {
      actions: [`move ${file} away: the lock-outs start afresh`],
    });
  }
  return raw as unknown as ThrottleFile;
};

export function loginThrottleFile(home: string): LockoutPersistence {
  const file = new JsonFileStore<ThrottleFile>({
    file: join(home, LOGIN_THROTTLE_FILE),
    initial: empty,
    validate,
  });
  return {
    load: async () => (await file.read()).state,
    save: (state) =>
      file.update((data) => {
        data.state = state;
      }),
  };
}
