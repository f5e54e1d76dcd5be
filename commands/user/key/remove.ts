import { Args } from '@oclif/core';
import { BaseCommand } from '../../../src/command-support/base-command.js';
import { openUserAdmin } from '../../../src/users/admin.js';

export interface UserKeyRemoveResult {
  user: string;
  removed: string;
  /** unix seconds: the tickets bound to the key issued before are refused */
  notBefore: number;
  /** the keys the user still has */
  keys: string[];
}

export default class UserKeyRemove extends BaseCommand {
  static override summary = 'Unregister one key of a user and revoke the tickets bound to it.';
  static override description =
    "The user's other keys and the tickets bound to them stay valid. While the lab runs, the gateway and the services refuse the key's tickets before the command returns.";
  static override examples = [
    '<%= config.bin %> <%= command.id %> alice Y2ZkYTk0...',
    '<%= config.bin %> <%= command.id %> -- alice -gIHEm_WUmOB4VA4JrmNp8NWWkOOfaulIxpgLoKHrkI',
    '<%= config.bin %> <%= command.id %> alice "$(trusted-ms user key list alice --json | jq -r \'.result.keys[0].thumbprint\')"',
  ];
  static override args = {
    name: Args.string({ description: 'user name', required: true }),
    thumbprint: Args.string({ description: 'RFC 7638 thumbprint (see `user key list`)', required: true }),
  };

  async run(): Promise<UserKeyRemoveResult> {
    const { args, flags } = await this.parse(UserKeyRemove);
    const r = await (await openUserAdmin(this.labHome(flags))).removeKey(args.name, args.thumbprint);
    const keys = r.user.keys.map((k) => k.thumbprint);
    this.log(
      `Removed ${r.removed.thumbprint} from ${args.name}; its tickets are refused. ${keys.length} key(s) left.`,
    );
    return { user: args.name, removed: r.removed.thumbprint, notBefore: r.notBefore, keys };
  }
}
