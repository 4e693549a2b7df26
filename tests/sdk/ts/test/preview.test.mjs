// Preview links of @daytonaio/sdk: an HTTP server started inside the sandbox (node, through an
// async session command) is opened through sandbox.getPreviewLink(port) with the returned token
// in X-Daytona-Preview-Token; the app sees the raw path and `Host: localhost:PORT`.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, beforeEach, describe, test } from 'node:test';

import { binaryExists, recordedFetch, setCurrentTest, setup, teardown } from './helpers.mjs';

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// An app answering `path=<raw url> host=<Host>` on 127.0.0.1:PORT.
const APP = `require('http').createServer((q, s) => s.end('path=' + q.url + ' host=' + q.headers.host)).listen(+process.argv[1], '127.0.0.1')`;

describe('preview links (TypeScript SDK)', { skip: !binaryExists() && 'toolboxd binary not built' }, () => {
  let ctx;
  let sb;

  before(async () => {
    ctx = await setup('ts-preview');
    sb = ctx.sandbox;
  });
  after(async () => {
    await teardown(ctx, 'preview.test.mjs');
  });
  beforeEach((t) => setCurrentTest(t.name));

  test('getPreviewLink opens an app running in the sandbox', async () => {
    const port = await freePort();
    await sb.process.createSession('ts-preview-app');
    try {
      await sb.process.executeSessionCommand('ts-preview-app', {
        command: `exec node -e "${APP}" ${port}`,
        runAsync: true,
      });
      const link = await sb.getPreviewLink(port);
      assert.ok(link.url.endsWith(`/proxy/${port}`), link.url);
      const headers = { 'X-Daytona-Preview-Token': link.token };
      let res;
      for (let i = 0; i < 300; i++) {
        res = await recordedFetch(`${link.url}/a%2Fb?x=%26`, { headers });
        if (res.status !== 502) break; // nothing listens yet
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(res.status, 200, await res.clone().text());
      assert.equal(await res.text(), `path=/a%2Fb?x=%26 host=localhost:${port}`);
    } finally {
      await sb.process.deleteSession('ts-preview-app');
    }
  });

  test('a closed port answers 502 with the JSON error body', async () => {
    const link = await sb.getPreviewLink(await freePort());
    const res = await recordedFetch(link.url, { headers: { 'X-Daytona-Preview-Token': link.token } });
    assert.equal(res.status, 502);
    const body = await res.json();
    assert.equal(body.code, 'BAD_GATEWAY');
    assert.equal(body.source, 'DAYTONA_DAEMON');
  });
});
