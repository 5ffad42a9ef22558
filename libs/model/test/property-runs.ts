// fast-check settings shared by the property tests: a fixed seed in `npm test`, more runs on demand.
//   KPX_PROPERTY_RUNS=5000 node --test libs/model/dist/test/properties.test.js
//   KPX_PROPERTY_SEED=123 ...   (a failure prints the seed and path to replay it)
export const propertyParams = {
  seed: Number(process.env.KPX_PROPERTY_SEED ?? 20261205),
  numRuns: Number(process.env.KPX_PROPERTY_RUNS ?? 100),
};
