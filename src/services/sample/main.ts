import { startSampleService } from './start.js';

/** Entry point of a sample microservice, bundled into `dist/lab/service.mjs`: the honest kit. */
await startSampleService();
