import { readFile } from 'node:fs/promises';
import { TrustedMsError } from '../errors.js';
import { jsonRequest } from '../kernel/http-client.js';
import type { LabState, PartState } from '../kernel/lab-state.js';
import { readSecret, type SinkPartConfig } from '../kernel/part-config.js';
import type { SinkRecordsBody } from '../services/sink/app.js';
import { assertLabAddress } from './http.js';
import type { Attempt, ScenarioContext } from './types.js';

/** The lab's attacker sink (a part started by `lab up`), or SERVICE_NOT_FOUND for an older lab. */
export function sinkPart(lab: LabState): PartState {
  const part = lab.parts.find((p) => p.kind === 'sink');
  if (part === undefined) {
    throw new TrustedMsError('SERVICE_NOT_FOUND', `lab ${lab.labId} has no attacker sink`, {
      actions: ['bring the lab up again with this version: trusted-ms lab down && trusted-ms lab up'],
    });
  }
  return part;
}

/** Where the lab's own parts (an implant) send to the sink: on Docker, its name on the lab network. */
export function sinkUrlForParts(lab: LabState): string {
  const part = sinkPart(lab);
  return part.networkUrl ?? part.url;
}

/** What the sink holds after `after` (a seq), read with the sink's own read token (never the lab token). */
export async function readSink(lab: LabState, after = 0, timeoutMs = 5000): Promise<SinkRecordsBody> {
  const part = sinkPart(lab);
  const config = JSON.parse(await readFile(part.configFile, 'utf8')) as SinkPartConfig;
  const url = assertLabAddress(`${part.url}/records?after=${after}`).href;
  return jsonRequest<SinkRecordsBody>(url, { token: readSecret(config.readTokenFile), timeoutMs });
}

/** The sink's last seq now: what a scenario's setup notes so its judge sees only its own loot. */
export async function sinkMark(lab: LabState): Promise<number> {
  return (await readSink(lab)).last;
}

/**
 * Records as evidence what reached the sink since `after`: one attempt, with `gotData` when any
 * record carries `marker`. A scenario's verdict then rests on what the attacker really received.
 */
export async function sinkEvidence(
  ctx: ScenarioContext,
  after: number,
  marker: string,
  action = 'what reached the attacker sink',
  /** show the start of the first record (never where it may carry a credential) */
  showBody = false,
): Promise<Attempt> {
  const { records } = await readSink(ctx.lab, after, ctx.timeoutMs);
  // The marker may arrive as it is or inside a JSON string (escaped) the implant wrapped it in.
  const escaped = JSON.stringify(marker).slice(1, -1);
  const hits = records.filter((r) => r.body.includes(marker) || r.body.includes(escaped));
  const attempt: Attempt = {
    action,
    target: `${sinkPart(ctx.lab).url}/records`,
    gotData: hits.length > 0,
    note:
      records.length === 0
        ? 'nothing arrived'
        : `${records.length} arrived (${hits.length} with the data): ${records
            .map((r) => `${r.method} ${r.path} ${r.body.length} B`)
            .slice(0, 4)
            .join('; ')}${showBody ? `; first: ${(records[0]?.body ?? '').slice(0, 200)}` : ''}`,
  };
  ctx.evidence.attempts.push(attempt);
  ctx.evidence.measurements = {
    ...ctx.evidence.measurements,
    sinkRecords: records.length,
    sinkRecordsWithData: hits.length,
  };
  return attempt;
}
