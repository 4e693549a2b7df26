// sandbox.createLspServer of @daytonaio/sdk against toolboxd, for python (pylsp) and typescript
// (typescript-language-server). URIs are 'file://' + path; positions are 0-based, so 0 is valid.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';

import { DaytonaLspServerNotInitializedError } from '@daytonaio/sdk';

import { binaryExists, setCurrentTest, setup, teardown, testDir } from './helpers.mjs';

describe('lsp (TypeScript SDK)', { skip: !binaryExists() && 'toolboxd binary not built' }, () => {
  let ctx;
  let sb;

  before(async () => {
    ctx = await setup('ts-lsp');
    sb = ctx.sandbox;
  });
  after(async () => {
    await teardown(ctx, 'lsp');
  });
  beforeEach((t) => setCurrentTest(t.name));

  test('python: completions, symbols, disk edits', async () => {
    const dir = testDir(ctx, 'py');
    const file = path.join(dir, 'main.py');
    fs.writeFileSync(file, 'import os\nos.pa\n\n\ndef top_level(x):\n    return x\n\n\nclass Widget:\n    pass\n');
    const lsp = await sb.createLspServer('python', dir);
    await lsp.start();
    try {
      await lsp.didOpen(file);
      const list = await lsp.completions(file, { line: 1, character: 5 });
      assert.ok(Array.isArray(list.items));
      assert.ok(list.items.some((item) => item.label === 'path'), JSON.stringify(list.items.slice(0, 5)));
      const zero = await lsp.completions(file, { line: 0, character: 0 });
      assert.ok(Array.isArray(zero.items));
      const symbols = Object.fromEntries((await lsp.documentSymbols(file)).map((s) => [s.name, s.kind]));
      assert.equal(symbols.top_level, 12);
      assert.equal(symbols.Widget, 5);
      assert.deepEqual(await lsp.sandboxSymbols('Widget'), []);
      fs.writeFileSync(file, 'def brand_new():\n    pass\n');
      assert.deepEqual((await lsp.documentSymbols(file)).map((s) => s.name), ['brand_new']);
      await lsp.didClose(file);
    } finally {
      await lsp.stop();
    }
  });

  test('typescript: completions, symbols, workspace symbols', async () => {
    const dir = testDir(ctx, 'ts');
    const file = path.join(dir, 'index.ts');
    fs.writeFileSync(
      file,
      "export function greetUser(name: string): string {\n  return name;\n}\nexport class Greeter {}\nconst s = 'x';\ns.\n",
    );
    fs.writeFileSync(path.join(dir, 'tsconfig.json'), '{"compilerOptions": {"strict": true}}\n');
    const lsp = await sb.createLspServer('typescript', dir);
    await lsp.start();
    try {
      await lsp.didOpen(file);
      const list = await lsp.completions(file, { line: 5, character: 2 });
      assert.ok(list.items.some((item) => item.label === 'toUpperCase'));
      for (const item of list.items) {
        assert.ok(item.documentation === undefined || typeof item.documentation === 'object');
        assert.ok(item.kind === undefined || Number.isInteger(item.kind));
      }
      const symbols = Object.fromEntries((await lsp.documentSymbols(file)).map((s) => [s.name, s.kind]));
      assert.equal(symbols.greetUser, 12);
      assert.equal(symbols.Greeter, 5);
      const found = (await lsp.sandboxSymbols('greetUser')).map((s) => s.name);
      assert.ok(found.includes('greetUser'), JSON.stringify(found));
      await lsp.didClose(file);
    } finally {
      await lsp.stop();
    }
  });

  test('a request before start is a typed error', async () => {
    const dir = testDir(ctx, 'none');
    fs.writeFileSync(path.join(dir, 'a.py'), 'x = 1\n');
    const lsp = await sb.createLspServer('python', dir);
    await assert.rejects(
      lsp.completions(path.join(dir, 'a.py'), { line: 0, character: 0 }),
      DaytonaLspServerNotInitializedError,
    );
  });
});
