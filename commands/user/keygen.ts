import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../src/command-support/base-command.js';
import { RSA_KEY_SIZES } from '../../src/crypto/keys.js';
import { resolveKeyDir } from '../../src/home.js';
import { openUserAdmin } from '../../src/users/admin.js';
import { type KeygenResult, keygenForUser } from '../../src/users/keygen.js';

export type UserKeygenResult = KeygenResult;

export default class UserKeygen extends BaseCommand {
  static override summary = "Generate a user's key pair here and register its public key.";
  static override description =
    "For the lab's own users: the key pair is generated on this machine and the private key written with mode 0600 to <key-dir>/<name>.pem; it never enters the store. Ed25519 by default; RSA for the paper posture, whose scheme needs it. A user who already has a key registers its public half instead: `user key add`. --force replaces the user's keys and revokes the tickets bound to them.";
  static override examples = [
    '<%= config.bin %> <%= command.id %> alice',
    '<%= config.bin %> <%= command.id %> bob --type rsa --bits 3072',
    '<%= config.bin %> <%= command.id %> alice --force --json',
  ];
  static override args = { name: Args.string({ description: 'user name', required: true }) };
  static override flags = {
    type: Flags.string({ description: 'key type', options: ['ed25519', 'rsa'], default: 'ed25519' }),
    bits: Flags.integer({ description: `RSA modulus size: ${RSA_KEY_SIZES.join(', ')} [default: 2048]` }),
    'key-dir': Flags.string({
      description: 'folder for private keys [default: $TRUSTED_MS_KEYS or ~/.trusted-ms/keys]',
    }),
    force: Flags.boolean({ description: 'replace an existing key file and unregister older keys' }),
  };

  async run(): Promise<UserKeygenResult> {
    const { args, flags } = await this.parse(UserKeygen);
    const result = await keygenForUser(await openUserAdmin(this.labHome(flags)), {
      user: args.name,
      type: flags.type as 'ed25519' | 'rsa',
      ...(flags.bits === undefined ? {} : { bits: flags.bits }),
      keyDir: resolveKeyDir(flags['key-dir']),
      force: flags.force,
    });
    const kind = result.type === 'rsa' ? `RSA-${result.bits}` : 'Ed25519';
    this.log(
      `${kind} key for ${result.user} generated here; private key written to ${result.privateKeyFile} (0600)`,
    );
    this.log(`thumbprint ${result.thumbprint}`);
    return result;
  }
}
