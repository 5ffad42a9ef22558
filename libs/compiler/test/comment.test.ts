// A --comment can never end its quotes or its line, whatever text it is given (the model's validation keeps
// such text out; this is the defence behind it).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { comment } from '../src/iptables/builder.js';

test("comment: kube-proxy's quoting for ordinary text; unsafe characters replaced, never a quote, backslash or line break", () => {
  assert.equal(comment('shop/web:http'), '-m comment --comment shop/web:http');
  assert.equal(comment('shop/web:http cluster IP'), '-m comment --comment "shop/web:http cluster IP"');
  assert.equal(comment("with type 'hash ip:port'"), `-m comment --comment "with type 'hash ip:port'"`);
  for (const text of ['a\n*filter\nCOMMIT', 'a" -j ACCEPT "', 'a\\', 'a\rb', 'a\u2028b', 'é', 'x'.repeat(1000) + '"']) {
    const c = comment(text);
    assert.match(
      c,
      /^-m comment --comment ("[\x20\x21\x23-\x5b\x5d-\x7e]*"|[\x21\x23-\x5b\x5d-\x7e]+)$/,
      JSON.stringify(text),
    );
    assert.ok(c.length < 300);
  }
});
