import { readFile } from 'node:fs/promises';
import { Flags } from '@oclif/core';
import { BaseCommand } from '../../src/command-support/base-command.js';
import { errnoCode, TrustedMsError } from '../../src/errors.js';
import { openUserAdmin } from '../../src/users/admin.js';

export interface UserImportResult {
  imported: string[];
  role: string;
}

export default class UserImport extends BaseCommand {
  static override summary = 'Import users from an Apache .htpasswd file (bcrypt entries).';
  static override description =
    'Entries made with `htpasswd -B` ($2y$) are kept as they are and upgraded to scrypt at the next successful login. Any other format (MD5 $apr1$, {SHA}, crypt, plain) is refused with its line numbers, and nothing is imported.';
  static override examples = [
    '<%= config.bin %> <%= command.id %> --htpasswd /etc/apache2/.htpasswd --role guest',
  ];
  static override flags = {
    htpasswd: Flags.string({ description: 'path of the .htpasswd file', required: true }),
    role: Flags.string({ char: 'r', description: 'role given to every imported user', required: true }),
  };

  async run(): Promise<UserImportResult> {
    const { flags } = await this.parse(UserImport);
    const text = await readFile(flags.htpasswd, 'utf8').catch((err: unknown) => {
      throw new TrustedMsError(
        'FILE_NOT_FOUND',
        `cannot read ${flags.htpasswd} (${errnoCode(err) ?? 'error'})`,
      );
    });
    const imported = await (await openUserAdmin(this.labHome(flags))).importHtpasswd(text, flags.role);
    this.log(`Imported ${imported.length} user(s) with role ${flags.role}: ${imported.join(', ')}`);
    return { imported, role: flags.role };
  }
}
