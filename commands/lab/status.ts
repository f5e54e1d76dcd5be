import { BaseCommand } from '../../src/command-support/base-command.js';
import { renderTable } from '../../src/command-support/table.js';
import { formatBytes } from '../../src/lab/disk.js';
import { type LabStatus, labStatus } from '../../src/lab/status.js';

export type LabStatusResult = LabStatus;

export default class LabStatusCommand extends BaseCommand {
  static override summary =
    "Show each part of the lab: alive or not, how often it was restarted, and each service's attestation.";
  static override description =
    'On the process runtime the lab\'s watchman brings a part that died back by itself (after 1 s, then 2, 4, 8, 16 s; at most 5 times in a row), and `restarts` counts how often it did; a part it gave up on shows "gave up". On Docker the containers\' restart policy does the same. The store (lowdb: the files of the lab home; postgres: its URL without the password, and the server the lab started) is named above the table (`store` in --json). A full or read-only disk under the lab home is shown above the table (and as `disk` in --json): logins and admin writes are refused with DISK_FULL or DISK_READ_ONLY until it is fixed, and work again without a restart once it is.';
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --json',
  ];

  async run(): Promise<LabStatusResult> {
    const { flags } = await this.parse(LabStatusCommand);
    const status = await labStatus(this.labHome(flags));
    if (!status.labId) {
      this.log('No lab is running. Start one: trusted-ms lab up');
      return status;
    }
    this.log(
      `Lab ${status.labId}: posture ${status.posture}${status.without?.length ? ` without ${status.without.join(', ')}` : ''}, ${status.runtime}, gateway ${status.gatewayUrl}`,
    );
    this.log(`Defences: ${(status.defences ?? []).join(' ')}`);
    const { store } = status;
    if (store !== undefined) {
      this.log(
        store.kind === 'lowdb'
          ? 'Store: lowdb (the files of the lab home)'
          : `Store: postgres ${store.where}${store.server ? ` (the lab's own server, pid ${store.server.pid}, data in ${store.server.clusterDir})` : ''}`,
      );
    }
    if (status.identityTtlSeconds !== undefined) {
      this.log(
        `Identities: ${status.identityTtlSeconds} s each, renewed at half-life after a trusted measurement`,
      );
    }
    const { disk } = status;
    if (disk !== undefined && disk.state !== 'ok') {
      this.log(
        disk.state === 'read-only'
          ? `Disk: ${disk.path} is READ-ONLY: logins and admin writes are refused (DISK_READ_ONLY) until it is writable again`
          : `Disk: ${formatBytes(disk.freeBytes)} free under ${disk.path}${disk.state === 'full' ? ': FULL, logins and admin writes are refused (DISK_FULL) until space is freed' : ' (low)'}`,
      );
    }
    if (status.feedMaxAgeSeconds !== undefined && status.defences?.includes('feeds:signed')) {
      this.log(`Feeds: signed, acted on for at most ${status.feedMaxAgeSeconds} s after their issue`);
    }
    for (const p of status.parts) {
      if (p.feeds?.stale !== true) continue;
      this.log(
        `Warning: ${p.name}'s control-plane feeds are STALE since ${p.feeds.since} (older than ${status.feedMaxAgeSeconds ?? '?'} s): it refuses the requests that depend on them with CONTROL_PLANE_STALE until the security service's next feed`,
      );
    }
    for (const p of status.parts) {
      if (p.foreignListener === undefined) continue;
      this.log(
        `Warning: at ${p.foreignListener.seenAt} something that is not ${p.name} listened on its port ${p.foreignListener.port} (it did not prove its identity); the watchman did not take it for ${p.name}`,
      );
    }
    this.log(
      renderTable(
        ['part', 'kind', 'alive', 'restarts', 'attestation', 'feeds', 'address'],
        status.parts.map((p) => [
          p.name,
          p.kind,
          // A Swarm service: its tasks running of those wanted, and the engine's restarts of them.
          p.alive ? (p.replicas ? `${p.replicas.running}/${p.replicas.desired}` : 'yes') : 'NO',
          p.replicas
            ? String(p.replicas.restarted)
            : p.gaveUp
              ? `${p.restarts} (gave up)`
              : String(p.restarts),
          p.attestation ?? '-',
          p.feeds === undefined ? '-' : p.feeds.stale ? 'STALE' : 'fresh',
          p.url,
        ]),
      ),
    );
    return status;
  }
}
