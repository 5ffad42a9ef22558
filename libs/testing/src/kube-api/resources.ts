// The API resources the test API server serves, and how request paths map onto them. Paths follow the
// Kubernetes REST layout: /api/v1/... for the core group, /apis/<group>/<version>/... for the others, with
// /namespaces/<ns>/ in front of the plural for one namespace.

export interface ResourceDef {
  readonly kind: string;
  readonly listKind: string;
  readonly group: string;
  readonly version: string;
  /** "v1" or "<group>/<version>": the apiVersion of the objects. */
  readonly apiVersion: string;
  readonly plural: string;
  readonly namespaced: boolean;
}

function resource(kind: string, group: string, version: string, plural: string, namespaced: boolean): ResourceDef {
  return {
    kind,
    listKind: `${kind}List`,
    group,
    version,
    apiVersion: group ? `${group}/${version}` : version,
    plural,
    namespaced,
  };
}

/** Services, EndpointSlices and Nodes: what kube-proxy (and kpx) watch. */
export const Resources: readonly ResourceDef[] = [
  resource('Service', '', 'v1', 'services', true),
  resource('Node', '', 'v1', 'nodes', false),
  resource('EndpointSlice', 'discovery.k8s.io', 'v1', 'endpointslices', true),
];

export function resourceForKind(kind: string): ResourceDef | undefined {
  return Resources.find((r) => r.kind === kind);
}

/** A request path resolved to a resource: every namespace (namespace undefined), one namespace, or one object. */
export interface ResourcePath {
  readonly resource: ResourceDef;
  readonly namespace: string | undefined;
  readonly name: string | undefined;
}

/** Resolves /api/v1/..., /apis/<group>/<version>/...; undefined when the path names no served resource. */
export function parseResourcePath(pathname: string): ResourcePath | undefined {
  const parts = pathname
    .split('/')
    .filter((p) => p !== '')
    .map((p) => decodeURIComponent(p));
  let group: string;
  let version: string;
  let rest: string[];
  if (parts[0] === 'api' && parts.length >= 2) {
    group = '';
    version = parts[1] ?? '';
    rest = parts.slice(2);
  } else if (parts[0] === 'apis' && parts.length >= 3) {
    group = parts[1] ?? '';
    version = parts[2] ?? '';
    rest = parts.slice(3);
  } else {
    return undefined;
  }
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  if (rest.length < 1 || rest.length > 2) return undefined;
  const def = Resources.find((r) => r.group === group && r.version === version && r.plural === rest[0]);
  if (def === undefined) return undefined;
  if (namespace !== undefined && !def.namespaced) return undefined;
  // A namespaced object is only addressable inside its namespace.
  if (rest[1] !== undefined && def.namespaced && namespace === undefined) return undefined;
  return { resource: def, namespace, name: rest[1] };
}
