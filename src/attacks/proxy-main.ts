import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { InterceptingProxy, type ProxyOptions } from './proxy.js';

/**
 * The attacker's proxy as a program of its own, run by the lab's runtime beside the lab (a local
 * process, or a container on the lab's network that the services can reach where this host's
 * loopback is out of their sight). Everything it relays and counts goes to `recordFile` (written
 * whole, then renamed, before the bytes are passed on), which `attack simulate` reads back.
 */
export interface ProxyProgramConfig {
  host: string;
  port: number;
  upstream: { host: string; port: number };
  tamper?: boolean;
  forged?: Record<string, unknown>;
  /** the attacker's own certificate, as files next to the config (key 0600) */
  tls?: { certFile: string; keyFile: string };
  lifetimeMs: number;
  recordFile: string;
}

/** What the record file holds. */
export interface ProxyRecord {
  stats: ReturnType<InterceptingProxy['stats']>;
  /** base64 of the bytes recorded each way */
  up: string;
  down: string;
}

const file = process.env.TMS_PART_CONFIG;
if (!file) throw new Error('TMS_PART_CONFIG is not set');
const config = JSON.parse(readFileSync(file, 'utf8')) as ProxyProgramConfig;

const write = (): void => {
  const record: ProxyRecord = {
    stats: proxy.stats(),
    up: proxy.bytesUp().toString('base64'),
    down: proxy.bytesDown().toString('base64'),
  };
  const tmp = `${config.recordFile}.tmp`;
  writeFileSync(tmp, JSON.stringify(record), { mode: 0o600 });
  renameSync(tmp, config.recordFile);
};
const opts: ProxyOptions = {
  upstream: config.upstream,
  host: config.host,
  lifetimeMs: config.lifetimeMs,
  ...(config.tamper ? { tamper: true } : {}),
  ...(config.forged ? { forged: config.forged } : {}),
  ...(config.tls
    ? {
        tls: {
          certPem: readFileSync(config.tls.certFile, 'utf8'),
          keyPem: readFileSync(config.tls.keyFile, 'utf8'),
        },
      }
    : {}),
  onChange: write,
  onClose: () => process.exit(0),
};
const proxy = new InterceptingProxy(opts);
await proxy.listen(config.port);
write();
console.log(
  `proxy listening on ${config.host}:${config.port} for ${config.upstream.host}:${config.upstream.port}`,
);

const stop = (): void => {
  void proxy.close().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
