import { join } from 'node:path';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { Service } from 'kubernetes-models/v1/Service';
import ts from 'typescript';
import { repoRoot } from './cli.js';

/** The models of kubernetes-models 4.5.1 for every kind the export writes, and their TS interface. */
const KINDS: Record<
  string,
  { model: new (data: never) => { validate(): void }; module: string; type: string }
> = {
  'v1/Namespace': { model: Namespace, module: 'kubernetes-models/v1/Namespace', type: 'INamespace' },
  'v1/ConfigMap': { model: ConfigMap, module: 'kubernetes-models/v1/ConfigMap', type: 'IConfigMap' },
  'v1/PersistentVolumeClaim': {
    model: PersistentVolumeClaim,
    module: 'kubernetes-models/v1/PersistentVolumeClaim',
    type: 'IPersistentVolumeClaim',
  },
  'v1/Service': { model: Service, module: 'kubernetes-models/v1/Service', type: 'IService' },
  'apps/v1/Deployment': {
    model: Deployment,
    module: 'kubernetes-models/apps/v1/Deployment',
    type: 'IDeployment',
  },
  'networking.k8s.io/v1/NetworkPolicy': {
    model: NetworkPolicy,
    module: 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy',
    type: 'INetworkPolicy',
  },
  'policy/v1/PodDisruptionBudget': {
    model: PodDisruptionBudget,
    module: 'kubernetes-models/policy/v1/PodDisruptionBudget',
    type: 'IPodDisruptionBudget',
  },
};

type Doc = { apiVersion?: unknown; kind?: unknown };

function kindOf(doc: Doc) {
  const k = KINDS[`${String(doc.apiVersion)}/${String(doc.kind)}`];
  if (k === undefined) throw new Error(`no model for ${String(doc.apiVersion)} ${String(doc.kind)}`);
  return k;
}

/**
 * Validates an object against the API's JSON schema as kubernetes-models ships it (types,
 * required fields, formats): throws with the schema's errors when it does not hold.
 */
export function validateWithSchema(doc: Doc): void {
  const { model } = kindOf(doc);
  new model(doc as never).validate();
}

/**
 * The schemas above let an unknown field through (as the API server does unless asked for strict
 * field validation). This is that strict check: each object, as written, is type-checked against
 * the package's TypeScript interface for its kind, where an object literal with a field the
 * interface does not name is an error (TS2353 and kin). One program for all the objects.
 */
export function unknownFieldErrors(docs: Doc[]): string[] {
  const imports = new Map<string, string>();
  const lines: string[] = [];
  docs.forEach((doc, i) => {
    const k = kindOf(doc);
    imports.set(k.type, k.module);
    lines.push(`export const o${i}: ${k.type} = ${JSON.stringify(doc)};`);
  });
  const source = [
    ...[...imports].map(([type, module]) => `import type { ${type} } from '${module}';`),
    ...lines,
  ].join('\n');
  const file = join(repoRoot, 'test', 'k8s-objects.virtual.ts');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
  };
  const host = ts.createCompilerHost(options);
  const read = host.getSourceFile.bind(host);
  host.getSourceFile = (name, language, ...rest) =>
    name === file ? ts.createSourceFile(name, source, language) : read(name, language, ...rest);
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const text = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    const at = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
    return `${at >= 0 ? `o${at - imports.size}: ` : ''}TS${d.code} ${text}`;
  });
}
