// The fast block-YAML reader gives exactly what js-yaml gives, or gives up.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { test } from 'node:test';
import fc from 'fast-check';
import yaml from 'js-yaml';
import { loadBlockYaml } from '../src/yaml-fast.js';
import { propertyParams } from './property-runs.js';

const CORE = { schema: yaml.CORE_SCHEMA };
const viaJsYaml = (text: string): unknown[] => yaml.loadAll(text, undefined, CORE);

/** Strings YAML treats specially somewhere. */
const tricky = fc.constantFrom(
  '',
  ' ',
  'a b',
  'a: b',
  'a:b',
  'a #b',
  'a#b',
  '#x',
  '- a',
  '-',
  '-1',
  '010',
  '0x1F',
  '0o17',
  '1e3',
  '1.5',
  '.inf',
  '.NaN',
  '~',
  'null',
  'Null',
  'true',
  'False',
  'yes',
  'no',
  'on',
  '1_000',
  '10.96.0.1',
  'fd00::1',
  "it's",
  'say "hi"',
  'back\\slash',
  'tab\there',
  'new\nline',
  ' lead',
  'trail ',
  '[a]',
  '{a}',
  '&a',
  '*a',
  '!a',
  '|',
  '>',
  '%a',
  '@a',
  '`a',
  '?',
  '? a',
  ':',
  ':a',
  'é😀',
  '\u0085',
  '\u2028',
  '---',
  '...',
  '<<',
);
const key = fc.oneof(
  fc.constantFrom(
    'name',
    'namespace',
    'kubernetes.io/service-name',
    'a.b',
    'x-y',
    'n',
    'y',
    '1',
    'null',
    '<<',
    'a b',
    "'q'",
  ),
  tricky,
  fc.string({ maxLength: 6 }),
);
const scalar = fc.oneof(
  tricky,
  fc.string({ maxLength: 8 }),
  fc.integer(),
  fc.double({ noNaN: true }),
  fc.boolean(),
  fc.constant(null),
);
const value = fc.letrec((tie) => ({
  v: fc.oneof({ depthSize: 'small', withCrossShrink: true }, scalar, tie('arr'), tie('obj')),
  arr: fc.array(tie('v'), { maxLength: 4 }),
  obj: fc.dictionary(key, tie('v'), { maxKeys: 4 }),
})).v;
const dumpOptions = fc.record({
  indent: fc.constantFrom(1, 2, 4),
  noArrayIndent: fc.boolean(),
  flowLevel: fc.constantFrom(-1, -1, 1, 3),
  quotingType: fc.constantFrom('"' as const, "'" as const),
  forceQuotes: fc.boolean(),
  lineWidth: fc.constantFrom(-1, 20),
});

test('fast reader: js-yaml-dumped documents read back exactly as js-yaml reads them, or it gives up', () => {
  let accepted = 0;
  let runs = 0;
  fc.assert(
    fc.property(fc.array(value, { minLength: 1, maxLength: 3 }), dumpOptions, (docs, opts) => {
      const text = docs.map((d) => yaml.dump(d, { ...opts, noRefs: true })).join('---\n');
      runs++;
      const fast = loadBlockYaml(text);
      if (fast === undefined) return;
      accepted++;
      assert.deepStrictEqual(fast, viaJsYaml(text), text);
    }),
    propertyParams,
  );
  // Random values are full of what the reader leaves to js-yaml; it must still take some.
  assert.ok(accepted > 0, `the fast reader took none of ${runs} texts`);
});

test('fast reader: mutated texts (a character changed, inserted or deleted) still agree with js-yaml or give up', () => {
  const base = readdirSync(new URL('../../../../examples/', import.meta.url))
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => readFileSync(new URL(`../../../../examples/${f}`, import.meta.url), 'utf8'));
  const dumped = base.map((t) =>
    viaJsYaml(t)
      .map((d) => yaml.dump(d))
      .join('---\n'),
  );
  // Manifests as a tool writes them are what the reader is for: it takes every one.
  for (const t of dumped) assert.deepStrictEqual(loadBlockYaml(t), viaJsYaml(t));
  fc.assert(
    fc.property(
      fc.constantFrom(...dumped),
      fc.nat(),
      fc.constantFrom(' ', ':', '-', '#', "'", '"', '\n', 'a', '0', '[', '&', '\t', ''),
      fc.constantFrom('replace', 'insert', 'delete'),
      (text, at, ch, op) => {
        const i = at % text.length;
        const t =
          op === 'replace'
            ? text.slice(0, i) + ch + text.slice(i + 1)
            : op === 'insert'
              ? text.slice(0, i) + ch + text.slice(i)
              : text.slice(0, i) + text.slice(i + 1);
        const fast = loadBlockYaml(t);
        if (fast === undefined) return;
        let want: unknown;
        try {
          want = viaJsYaml(t);
        } catch {
          assert.fail(`the fast reader accepted a text js-yaml rejects:\n${t}`);
        }
        assert.deepStrictEqual(fast, want, t);
      },
    ),
    propertyParams,
  );
});

test('fast reader: hand-written cases', () => {
  const same = [
    'a: 1\n',
    'a:\n- 1\n- b: 2\n  c: 3\nd: ~\n',
    '---\na: 1\n---\nb: [] # empty\nc: {}\n',
    '# comment\n---\na: "x\\ty"\n',
    "a: 'it''s'\n",
    'a:\n  b:\n    - x\n    -   y: 1\n        z: 2\n',
    'list:\n  -\n    a: 1\n',
    'a: b # comment\n  # indented comment\nc: d\n',
  ];
  for (const t of same) assert.deepStrictEqual(loadBlockYaml(t), viaJsYaml(t), t);
  const gaveUp = [
    'a: &x 1\nb: *x\n',
    'a: |\n  text\n',
    'a: [1, 2]\n',
    'a: 1\na: 2\n',
    'a: 1\n---\n',
    'a: b\n  c\n',
    'a:\tb\n',
    '%YAML 1.2\n---\na: 1\n',
    '? a\n: b\n',
    'a: "multi\n  line"\n',
    '__proto__: 1\n',
  ];
  for (const t of gaveUp) assert.equal(loadBlockYaml(t), undefined, t);
});
