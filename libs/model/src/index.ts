export { ClusterState } from './cluster.js';
export { DiagnosticSink, FileKind, Severity, formatDiagnostic, formatObjectRef } from './diagnostics.js';
export type { Diagnostic, ObjectRef } from './diagnostics.js';
export { convertEndpointSlice } from './endpoints.js';
export type { Endpoint, EndpointSliceConversion, EndpointSliceInfo, SlicePort } from './endpoints.js';
export { ManifestError } from './errors.js';
export {
  IPFamily,
  canonicalIP,
  isSloppyIPv4,
  cidrContains,
  ipFamilyOf,
  isLoopback,
  joinHostPort,
  parseCidr,
} from './ip.js';
export type { Cidr } from './ip.js';
export { Kind, LabelServiceName, LabelTopologyZone } from './k8s.js';
export type { EndpointSliceObject, KubeObject, NodeObject, ObjectMeta, ServiceObject } from './k8s.js';
export {
  DefaultManifestLimits,
  admitObject,
  checkObject,
  listManifestFiles,
  loadClusterState,
  parseManifestText,
  parseManifests,
  readManifestDir,
  readManifestFile,
  readManifests,
} from './manifests.js';
export type {
  AdmittedObject,
  CheckedObject,
  ManifestFile,
  ManifestFileList,
  ManifestLimits,
  ManifestObject,
  ParsedManifests,
} from './manifests.js';
export { checkObjectMeta, objectRefOf } from './meta.js';
export {
  checkDNS1035Label,
  checkDNS1123Label,
  checkDNS1123Subdomain,
  checkIANAServiceName,
  checkLabelValue,
  checkQualifiedName,
  refName,
  show,
} from './validation.js';
export { convertNode, primaryNodeIP } from './node.js';
export type { NodeAddressInfo, NodeInfo } from './node.js';
export {
  DefaultAffinityTimeoutSeconds,
  Protocol,
  ServiceType,
  TrafficPolicy,
  convertService,
  externallyAccessible,
  servicePortKey,
  servicePortNameString,
  usesClusterEndpoints,
  usesLocalEndpoints,
} from './service.js';
export type { ServiceConversion, ServicePort, ServiceRef } from './service.js';
export {
  TopologyMode,
  categorizeEndpoints,
  compareEndpoints,
  isLocalEndpoint,
  topologyModeFromHints,
} from './topology.js';
export type { CategorizedEndpoints, NodeTopology, TopologyOptions } from './topology.js';
export {
  IPVSScheduler,
  KUBE_PROXY_CONFIG_API_VERSION,
  KUBE_PROXY_CONFIG_KIND,
  KubeProxyConfigError,
  LocalMode,
  NodePortAddressesKind,
  ProxyMode,
  defaultKubeProxyConfig,
  formatDuration,
  loadKubeProxyConfig,
  parseDuration,
  readKubeProxyConfigFile,
} from './config/index.js';
export type {
  KubeProxyClientConnectionConfig,
  KubeProxyConfig,
  KubeProxyConfigErrorOptions,
  KubeProxyConfigLoadResult,
  KubeProxyConfigProblem,
  KubeProxyConntrackConfig,
  KubeProxyDetectLocalConfig,
  KubeProxyIPTablesConfig,
  KubeProxyIPVSConfig,
  LoadKubeProxyConfigOptions,
  NodePortAddresses,
  ParseDurationOptions,
} from './config/index.js';
