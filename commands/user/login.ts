import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../src/cli/base-command.js';
import { obtainPassword } from '../../src/cli/password-input.js';
import { login } from '../../src/client/login.js';
import { saveSession } from '../../src/client/session.js';
import { loadPrivateKeyFile, privateKeyPath } from '../../src/crypto/keys.js';
import { resolveKeyDir } from '../../src/home.js';
import { requireLabState } from '../../src/kernel/lab-state.js';

export interface UserLoginResult {
  user: string;
  posture: string;
  expiresAt?: number;
  thumbprint?: string;
  sessionFile: string;
  timings: { challengeMs: number; signMs: number; verifyMs: number };
}

export default class UserLogin extends BaseCommand {
  static override summary = 'Log in to the running lab: password, then the signed challenge, then a ticket.';
  static override description =
    "The ticket (and in the trusted posture the session key that signs each request's proof) is kept in <home>/sessions/<name>.json with mode 0600 for `call`. The private key never leaves this machine.";
  static override examples = [
    'printf %s "$PASSWORD" | <%= config.bin %> <%= command.id %> alice --password-stdin',
    '<%= config.bin %> <%= command.id %> bob --key ./bob.pem',
  ];
  static override args = { name: Args.string({ description: 'user name', required: true }) };
  static override flags = {
    key: Flags.string({ description: 'private key file [default: <key-dir>/<name>.pem]' }),
    'key-dir': Flags.string({
      description: 'folder of private keys [default: $TRUSTED_MS_KEYS or ~/.trusted-ms/keys]',
    }),
    'password-stdin': Flags.boolean({ description: 'read the password from standard input' }),
  };

  async run(): Promise<UserLoginResult> {
    const { args, flags } = await this.parse(UserLogin);
    const home = this.labHome(flags);
    const lab = await requireLabState(home);
    const privateKey =
      lab.posture === 'none'
        ? undefined
        : await loadPrivateKeyFile(flags.key ?? privateKeyPath(resolveKeyDir(flags['key-dir']), args.name));
    const password = await obtainPassword({
      stdin: flags['password-stdin'],
      confirm: false,
      user: args.name,
    });
    const { session, timings } = await login(lab, args.name, password, privateKey);
    const sessionFile = await saveSession(home, session);
    const until = session.expiresAt ? ` until ${new Date(session.expiresAt * 1000).toISOString()}` : '';
    this.log(`${args.name} logged in to lab ${lab.labId} (${lab.posture})${until}.`);
    return {
      user: args.name,
      posture: lab.posture,
      ...(session.expiresAt === undefined ? {} : { expiresAt: session.expiresAt }),
      ...(session.thumbprint === undefined ? {} : { thumbprint: session.thumbprint }),
      sessionFile,
      timings,
    };
  }
}
