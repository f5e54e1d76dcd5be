import { readPartConfig, readSecret } from '../../kernel/part-config.js';
import { buildSink } from './app.js';

/** Entry point of the attacker's sink, a part of the lab (see app.ts). */
const config = readPartConfig('sink');
const app = buildSink({ readToken: readSecret(config.readTokenFile) });
await app.listen({ host: config.host, port: config.port });
console.log(`sink listening on http://${config.host}:${config.port}`);

const stop = (): void => {
  setTimeout(() => process.exit(0), 1000).unref();
  void app.close().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
