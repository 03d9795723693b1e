/**
 * Model: the graph plus everything ModelProto carries around it. Functions, training info
 * and device configurations are kept as decoded protos: regroup never rewrites them, and
 * keeping them whole is what makes a round trip lossless.
 */
import type { CloneMap } from './clone.js';
import type { Graph } from './graph.js';
import type { WireShape } from './wire-shape.js';

export interface OpsetId {
  readonly domain: string;
  readonly version: number;
}

export class Model {
  graph: Graph;
  irVersion = 10;
  opsetImports: OpsetId[] = [{ domain: '', version: 18 }];
  producerName: string | undefined = 'regroup';
  producerVersion: string | undefined;
  domain: string | undefined;
  modelVersion: number | undefined;
  docString: string | undefined;
  metadataProps: [string, string][] = [];
  /** Decoded FunctionProto list, passed through. */
  functions: unknown[] = [];
  /** Decoded TrainingInfoProto list, passed through. */
  trainingInfo: unknown[] = [];
  /** Decoded DeviceConfigurationProto list, passed through. */
  configuration: unknown[] = [];
  /** How the decoded ModelProto wrote its fields (presence, unknown fields), for an exact re-encoding. */
  wire: WireShape | undefined;

  constructor(graph: Graph) {
    this.graph = graph;
  }

  /**
   * A deep copy without encoding: the graph tree is cloned (Graph.clone), the model fields
   * are copied; functions, training info and device configurations are decoded protos that
   * regroup never rewrites, so the copy's lists share them.
   */
  clone(): { model: Model } & CloneMap {
    const { graph, ...map } = this.graph.clone();
    const model = new Model(graph);
    model.irVersion = this.irVersion;
    model.opsetImports = this.opsetImports.map((o) => ({ ...o }));
    model.producerName = this.producerName;
    model.producerVersion = this.producerVersion;
    model.domain = this.domain;
    model.modelVersion = this.modelVersion;
    model.docString = this.docString;
    model.metadataProps = this.metadataProps.map(([key, value]) => [key, value]);
    model.functions = [...this.functions];
    model.trainingInfo = [...this.trainingInfo];
    model.configuration = [...this.configuration];
    model.wire = this.wire;
    return { model, ...map };
  }

  /** Opset version in force for a domain ('' and 'ai.onnx' are the same domain). */
  opset(domain = ''): number | undefined {
    const want = domain === 'ai.onnx' ? '' : domain;
    return this.opsetImports.find((o) => (o.domain === 'ai.onnx' ? '' : o.domain) === want)?.version;
  }
}
