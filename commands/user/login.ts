import { Args, Flags } from '@oclif/core';
import { login } from '../../src/client/login.js';
import { explainRefusal, resolveLoginKey, splitStdinSecrets } from '../../src/client/login-key.js';
import { saveSession } from '../../src/client/session.js';
import { BaseCommand } from '../../src/command-support/base-command.js';
import {
  obtainPassword,
  passphraseSource,
  readPasswordFromStdin,
} from '../../src/command-support/password-input.js';
import { resolveKeyDir } from '../../src/home.js';
import { trustLabEdge, withLabTime } from '../../src/kernel/edge-client.js';
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
    "The ticket (and in the trusted posture the session key that signs each request's proof) is kept in <home>/sessions/<name>.json with mode 0600 for `call`. The private key never leaves this machine: --key reads a PEM or OpenSSH (ssh-keygen) key file, encrypted ones with a passphrase; --agent has ssh-agent sign (Ed25519 keys; the key never leaves the agent). With --password-stdin and --passphrase-stdin, standard input holds the password, then the passphrase, one per line.";
  static override examples = [
    'printf %s "$PASSWORD" | <%= config.bin %> <%= command.id %> alice --password-stdin',
    '<%= config.bin %> <%= command.id %> bob --key ~/.ssh/id_ed25519',
    'printf "%s\\n%s\\n" "$PASSWORD" "$PASSPHRASE" | <%= config.bin %> <%= command.id %> bob --key ~/.ssh/id_ed25519 --password-stdin --passphrase-stdin',
    'printf %s "$PASSWORD" | <%= config.bin %> <%= command.id %> carol --agent --password-stdin',
  ];
  static override args = { name: Args.string({ description: 'user name', required: true }) };
  static override flags = {
    key: Flags.string({
      description: 'private key file, PEM or OpenSSH [default: <key-dir>/<name>.pem]',
      exclusive: ['agent'],
    }),
    agent: Flags.boolean({
      description: 'sign with a key held by ssh-agent ($SSH_AUTH_SOCK)',
      exclusive: ['key'],
    }),
    'key-dir': Flags.string({
      description: 'folder of private keys [default: $TRUSTED_MS_KEYS or ~/.trusted-ms/keys]',
    }),
    'password-stdin': Flags.boolean({ description: 'read the password from standard input' }),
    'passphrase-stdin': Flags.boolean({ description: "read the key's passphrase from standard input" }),
  };

  async run(): Promise<UserLoginResult> {
    const { args, flags } = await this.parse(UserLogin);
    const home = this.labHome(flags);
    const lab = await requireLabState(home);
    const fromStdin = flags['password-stdin'] || flags['passphrase-stdin'];
    const secrets = fromStdin
      ? splitStdinSecrets(await readPasswordFromStdin(), {
          password: flags['password-stdin'],
          passphrase: flags['passphrase-stdin'],
        })
      : { password: undefined, passphrase: undefined };
    const key =
      lab.posture === 'none'
        ? undefined
        : await resolveLoginKey({
            home,
            user: args.name,
            keyFile: flags.key,
            keyDir: resolveKeyDir(flags['key-dir']),
            agent: flags.agent,
            passphrase: passphraseSource(secrets.passphrase, flags.key ?? 'the key'),
          });
    const password =
      secrets.password ?? (await obtainPassword({ stdin: false, confirm: false, user: args.name }));
    await trustLabEdge(withLabTime(lab, home));
    const { session, timings } = await login(lab, args.name, password, key).catch(async (err: unknown) => {
      throw key === undefined ? err : await explainRefusal(err, home, args.name, key);
    });
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
