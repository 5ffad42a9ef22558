export { CommandError, RulesLoadError, ServerStartError, TopologyError } from './errors.js';
export { ipBatch, run, runIn } from './exec.js';
export type { RunOptions, RunResult } from './exec.js';
export { nodesYaml, standardNode, standardPod, webServiceYaml, webSliceYaml } from './layout.js';
export { listNamespaces, makeRunPrefix, MaxNameLength, sweepNamespaces } from './netns.js';
export { createTopology, IpFamily, PodServerScript, ProbeClientScript, Role } from './topology.js';
export type {
  ClientRoute,
  NodeSpec,
  PodSpec,
  ProbeRequest,
  ProbeResult,
  ServerOptions,
  Topology,
  TopologySpec,
} from './topology.js';
export { startNatsServer } from './nats/nats-server.js';
export type { NatsServer, NatsServerOptions } from './nats/nats-server.js';
export { ExpiredWatchResponse, startKubeApiServer } from './kube-api/server.js';
export type { KubeApiServer, KubeApiServerOptions, RecordedRequest, WatchInfo } from './kube-api/server.js';
export { KubeApiServerError, KubeApiStoreError } from './kube-api/errors.js';
export type { KubeApiObject, KubeApiObjectMeta, KubeApiStore } from './kube-api/store.js';
export { createTestPki } from './pki.js';
export type { CertFiles, Subject, TestPki } from './pki.js';
export { freePort } from './ports.js';
