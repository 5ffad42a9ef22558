// Properties of render (issue #13), with fast-check: a fixed seed in `npm test`, more runs with
// KPX_PROPERTY_RUNS. The object generators are the model's (libs/model/test/arbitraries.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { IPFamily, checkObject, defaultKubeProxyConfig, loadClusterState, type ManifestObject } from '@kpx/model';
import {
  RestoreFormat,
  compileIptables,
  compileIpvs,
  iptablesOptionsFromConfig,
  ipvsOptionsFromConfig,
  renderIpvsRuleSet,
  renderRestore,
} from '@kpx/compiler';

/** The model's generators, from its built tests (a package's tests are not a package: loaded by path at run time). */
interface ModelArbitraries {
  readonly nodeNames: readonly string[];
  readonly validNode: fc.Arbitrary<{ metadata: Record<string, unknown> }>;
  readonly validService: fc.Arbitrary<{
    metadata: { name: string; namespace: string };
    spec: { ports: { name: string; port: number; protocol?: string }[] };
  }>;
  readonly mutatedObject: fc.Arbitrary<unknown>;
}
const modelTest = new URL('../../../../libs/model/dist/test/', import.meta.url);
const { mutatedObject, nodeNames, validNode, validService } = (await import(
  new URL('arbitraries.js', modelTest).href
)) as ModelArbitraries;
const { propertyParams } = (await import(new URL('property-runs.js', modelTest).href)) as {
  propertyParams: { seed: number; numRuns: number };
};

type Obj = Record<string, unknown> & { metadata: Record<string, unknown> };

/** A valid cluster: the three nodes, services with distinct names, and a slice per service matching its ports. */
const cluster = fc
  .tuple(
    fc.tuple(...nodeNames.map((n) => validNode.map((o) => ({ ...o, metadata: { ...o.metadata, name: n } })))),
    fc.uniqueArray(validService, { maxLength: 6, selector: (s) => `${s.metadata.namespace}/${s.metadata.name}` }),
    fc.array(fc.tuple(fc.integer({ min: 1, max: 250 }), fc.constantFrom(...nodeNames), fc.boolean()), {
      minLength: 6,
      maxLength: 18,
    }),
  )
  .map(([nodes, services, eps]) => {
    const slices = services.map((s, i) => ({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: `${s.metadata.name}-s`,
        namespace: s.metadata.namespace,
        labels: { 'kubernetes.io/service-name': s.metadata.name },
      },
      addressType: 'IPv4',
      ports: s.spec.ports.map((p) => ({ name: p.name, port: 8000 + (p.port % 1000), protocol: p.protocol })),
      endpoints: eps
        .slice(i % 3, (i % 3) + 3)
        .map(([host, node, ready]) => ({ addresses: [`10.244.${i}.${host}`], nodeName: node, conditions: { ready } })),
    }));
    return [...nodes, ...services, ...slices];
  });

/** Objects that are invalid (checked), each with a name of its own so that none replaces a valid object. */
const invalidObjects = fc.array(
  mutatedObject.filter(
    (o) =>
      typeof o === 'object' && o !== null && (o as { metadata?: unknown }).metadata !== undefined && !checkObject(o).ok,
  ),
  { maxLength: 6 },
);

function withFreshNames(objects: unknown[]): Obj[] {
  return objects.map((o, i) => {
    const obj = o as Obj;
    const meta = typeof obj.metadata === 'object' && obj.metadata !== null ? obj.metadata : {};
    // A mutation may have made the name itself the invalid part: keep that; else a fresh valid name.
    const name = meta.name;
    const fresh = typeof name === 'string' && /^[a-z]([a-z0-9-]*[a-z0-9])?$/.test(name) ? `zzbad-${i}` : name;
    return { ...obj, metadata: { ...meta, name: fresh } };
  });
}

const config = defaultKubeProxyConfig();

/** Node n1's rules in several modes: iptables (IPv4 full, IPv6 chains) and ipvs (IPv4 full). */
function render(objects: readonly Obj[]): string {
  const { state } = loadClusterState(objects.map((object, i): ManifestObject => ({ object, source: `f.yaml#${i}` })));
  const v4 = compileIptables({ state, nodeName: 'n1', options: iptablesOptionsFromConfig(config, IPFamily.IPv4) });
  const v6 = compileIptables({ state, nodeName: 'n1', options: iptablesOptionsFromConfig(config, IPFamily.IPv6) });
  const ipvs = compileIpvs({ state, nodeName: 'n1', options: ipvsOptionsFromConfig(config, IPFamily.IPv4) });
  return `${renderRestore(v4, RestoreFormat.Full)}${renderRestore(v6, RestoreFormat.Chains)}${renderIpvsRuleSet(ipvs, RestoreFormat.Full)}`;
}

function shuffle<T>(xs: readonly T[], keys: readonly number[]): T[] {
  return xs
    .map((x, i) => ({ x, k: keys[i % Math.max(1, keys.length)] ?? 0, i }))
    .sort((a, b) => a.k - b.k || a.i - b.i)
    .map((e) => e.x);
}

test('render is deterministic under shuffled input', () => {
  fc.assert(
    fc.property(cluster, fc.array(fc.nat(), { minLength: 1, maxLength: 40 }), (objects, keys) => {
      assert.equal(render(shuffle(objects, keys)), render(objects));
    }),
    { ...propertyParams, numRuns: Math.max(10, Math.floor(propertyParams.numRuns / 4)) },
  );
});

test('the rules of valid objects are byte-identical with and without invalid objects beside them', () => {
  fc.assert(
    fc.property(
      cluster,
      invalidObjects,
      fc.array(fc.nat(), { minLength: 1, maxLength: 40 }),
      (objects, invalid, keys) => {
        const bad = withFreshNames(invalid);
        for (const o of bad) assert.equal(checkObject(o).ok, false);
        assert.equal(render(shuffle([...objects, ...bad], keys)), render(objects));
      },
    ),
    { ...propertyParams, numRuns: Math.max(10, Math.floor(propertyParams.numRuns / 4)) },
  );
});
