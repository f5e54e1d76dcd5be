// Writes docs/openapi/gateway.json and security.json from the built servers' route schemas
// (src/services/openapi-documents.ts). Run by `npm run openapi` after a change to a route; the
// OpenAPI test fails while a committed file is stale.
import { mkdir, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { gatewayDocument, securityDocument } from '../dist/src/services/openapi-documents.js';

const dir = fileURLToPath(new URL('../docs/openapi/', import.meta.url));
await mkdir(dir, { recursive: true });
for (const [name, doc] of [
  ['gateway', await gatewayDocument()],
  ['security', await securityDocument()],
]) {
  await writeFile(`${dir}${name}.json`, `${JSON.stringify(doc, null, 2)}\n`);
  console.log(`docs/openapi/${name}.json: ${Object.keys(doc.paths).length} paths`);
}
