// Errors raised at the HTTP edge reach @daytonaio/sdk with the wire body: a URI the HTTP parser
// refuses (414, before any route runs) and a JSON body over toolboxd's limit (413).

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import { DaytonaError } from '@daytonaio/sdk';

import { binaryExists, setCurrentTest, setup, teardown } from './helpers.mjs';

const JSON_LIMIT = 16 * 1024 * 1024;

describe('edge errors (TypeScript SDK)', { skip: !binaryExists() && 'toolboxd binary not built' }, () => {
  let ctx;
  let sb;

  before(async () => {
    ctx = await setup('ts-edge');
    sb = ctx.sandbox;
  });
  after(async () => {
    await teardown(ctx, 'edge.test.mjs');
  });
  beforeEach((t) => setCurrentTest(t.name));

  test('a URI over the parser limit is a 414 with a message', async () => {
    await assert.rejects(sb.fs.getFileDetails('a'.repeat(70_000)), (err) => {
      assert.ok(err instanceof DaytonaError, String(err));
      assert.equal(err.statusCode, 414);
      assert.equal(err.code, 'URI_TOO_LONG');
      assert.match(err.message, /65534/);
      return true;
    });
  });

  test('a JSON body over the limit is a 413 naming it', async () => {
    await assert.rejects(sb.process.executeCommand('true #' + 'x'.repeat(JSON_LIMIT)), (err) => {
      assert.ok(err instanceof DaytonaError, String(err));
      assert.equal(err.statusCode, 413);
      assert.equal(err.code, 'PAYLOAD_TOO_LARGE');
      assert.match(err.message, /16 MiB/);
      return true;
    });
    const res = await sb.process.executeCommand('echo ok');
    assert.equal(res.result, 'ok\n');
  });
});
