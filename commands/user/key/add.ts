import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../../src/command-support/base-command.js';
import { openUserAdmin } from '../../../src/users/admin.js';
import { addPublicKey, type KeyAddResult, readPublicKeyInput } from '../../../src/users/user-keys.js';

export type UserKeyAddResult = KeyAddResult;

export default class UserKeyAdd extends BaseCommand {
  static override summary = 'Register a public key the user already has; print its RFC 7638 thumbprint.';
  static override description =
    'PEM (SPKI) Ed25519 or RSA (2048 bits and more), an OpenSSH public key line (ssh-ed25519, ssh-rsa) or a JWK. Only the public key is read and stored: the private key stays with its owner (a file, ssh-agent, a token). A user may have several keys, each usable at login.';
  static override examples = [
    '<%= config.bin %> <%= command.id %> alice --public-key ~/.ssh/id_ed25519.pub',
    'openssl pkey -in bob.pem -pubout | <%= config.bin %> <%= command.id %> bob --public-key -',
    '<%= config.bin %> <%= command.id %> carol --public-key carol.jwk --json',
  ];
  static override args = { name: Args.string({ description: 'user name', required: true }) };
  static override flags = {
    'public-key': Flags.string({
      description: 'public key file, or - for standard input',
      required: true,
    }),
  };

  async run(): Promise<UserKeyAddResult> {
    const { args, flags } = await this.parse(UserKeyAdd);
    const text = await readPublicKeyInput(flags['public-key']);
    const admin = await openUserAdmin(this.labHome(flags));
    const result = await addPublicKey(admin, args.name, text);
    const kind = result.type === 'rsa' ? `RSA-${result.bits}` : 'Ed25519';
    this.log(
      `${kind} key (${result.format}) registered for ${result.user}; it has ${result.keys.length} key(s)`,
    );
    this.log(`thumbprint ${result.thumbprint}`);
    return result;
  }
}
