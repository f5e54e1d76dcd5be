import { Args, Flags } from '@oclif/core';
import { type CallResult, callService } from '../src/client/call.js';
import { loadSession } from '../src/client/session.js';
import { BaseCommand } from '../src/command-support/base-command.js';
import { TrustedMsError } from '../src/errors.js';
import { trustLabEdge, withLabTime } from '../src/kernel/edge-client.js';
import { fromErrorBody } from '../src/kernel/error-body.js';
import { requireLabState } from '../src/kernel/lab-state.js';

export type CallCommandResult = CallResult;

export default class Call extends BaseCommand {
  static override summary = 'Send an authenticated request to a service through the gateway.';
  static override description =
    "Adds the logged-in user's credentials: HTTP basic (none), the ticket (paper), or the ticket and a fresh proof of possession (trusted). Exits non-zero with the refusal's code when the lab says no.";
  static override examples = [
    '<%= config.bin %> <%= command.id %> orders /db/orders/records/ord-1 --as alice',
    '<%= config.bin %> <%= command.id %> orders /db/orders/query --data \'{"where":{"customer":"cust-1"}}\'',
    '<%= config.bin %> <%= command.id %> inventory /db/inventory/records/prod-3 --method PUT --data \'{"record":{"onHand":5}}\'',
    '<%= config.bin %> <%= command.id %> orders /overview --json',
  ];
  static override args = {
    service: Args.string({ description: 'service name, e.g. orders', required: true }),
    path: Args.string({ description: 'path inside the service, e.g. /db/orders/records', required: true }),
  };
  static override flags = {
    as: Flags.string({ description: 'user whose session to use [default: the only one logged in]' }),
    data: Flags.string({ char: 'd', description: 'JSON body to send' }),
    method: Flags.string({
      char: 'X',
      description: 'HTTP method',
      options: ['GET', 'POST', 'PUT', 'DELETE'],
    }),
  };

  async run(): Promise<CallCommandResult> {
    const { args, flags } = await this.parse(Call);
    const home = this.labHome(flags);
    const lab = await requireLabState(home);
    const session = await loadSession(home, flags.as);
    if (session.labId !== lab.labId) {
      throw new TrustedMsError('TICKET_EXPIRED', `${session.user}'s session belongs to an earlier lab`, {
        actions: [`log in again: trusted-ms user login ${session.user}`],
      });
    }
    if (flags.data !== undefined) {
      try {
        JSON.parse(flags.data);
      } catch {
        throw new TrustedMsError('INVALID_INPUT', '--data is not valid JSON');
      }
    }
    await trustLabEdge(withLabTime(lab, home));
    const result = await callService(session, {
      gatewayUrl: lab.gatewayUrl,
      service: args.service,
      path: args.path,
      ...(flags.method ? { method: flags.method as 'GET' } : {}),
      ...(flags.data === undefined ? {} : { body: flags.data }),
    });
    if (result.status >= 400) throw fromErrorBody(result.status, result.body);
    this.log(typeof result.body === 'string' ? result.body : JSON.stringify(result.body, null, 2));
    return result;
  }
}
