// Signed single-file URLs of @daytonaio/sdk 0.218.0.
//
// sandbox.downloadUrl(path, ttl?) / sandbox.uploadUrl(path, ttl?) fetch
//   GET {apiUrl}/sandbox/{id}/signing-key   -> 200, a JSON string (the key)
// (cached 15 s; rotateSigningKey() is POST {apiUrl}/sandbox/{id}/signing-key/rotate -> JSON string)
// and sign locally: signature = "v1_" + base64url(HMAC-SHA256(key, `v1:files:${METHOD}:${path}:${expires}`)),
// giving
//   {toolboxProxyUrl}/{id}/files/download?path=..&expires=..&signature=..   (GET)
//   {toolboxProxyUrl}/{id}/files/upload-v2?path=..&expires=..&signature=..  (POST, multipart `file` or raw body)
// which are used with no Authorization header. expires=0 means "never expires".

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';

import { binaryExists, recordedFetch, setCurrentTest, setup, teardown, testDir } from './helpers.mjs';

function expectedSignature(key, method, filePath, expires) {
  const mac = crypto.createHmac('sha256', key).update(`v1:files:${method}:${filePath}:${expires}`).digest('base64url');
  return `v1_${mac}`;
}

describe('signed file URLs (TypeScript SDK)', { skip: !binaryExists() && 'toolboxd binary not built' }, () => {
  let ctx;
  let sb;

  before(async () => {
    ctx = await setup('ts-signed');
    sb = ctx.sandbox;
  });
  after(async () => {
    await teardown(ctx, 'signed-urls.test.mjs');
  });
  beforeEach((t) => setCurrentTest(t.name));

  test('downloadUrl: GET without auth returns the bytes', async () => {
    const d = testDir(ctx, 'dl');
    for (const name of ['plain.txt', 'with space + plus é日本.txt']) {
      const f = path.join(d, name);
      const content = crypto.randomBytes(50_000);
      fs.writeFileSync(f, content);
      const url = await sb.downloadUrl(f);
      const u = new URL(url);
      assert.equal(u.pathname, `${new URL(sb.toolboxProxyUrl).pathname.replace(/\/+$/, '')}/${sb.id}/files/download`);
      assert.equal(u.searchParams.get('path'), f);
      assert.match(u.searchParams.get('signature'), /^v1_[A-Za-z0-9_-]+$/);
      const res = await recordedFetch(url);
      assert.equal(res.status, 200, await res.clone().text());
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), content);
    }
  });

  test('signature matches the key served by GET /sandbox/{id}/signing-key', async () => {
    const d = testDir(ctx, 'sig');
    const f = path.join(d, 'k.txt');
    fs.writeFileSync(f, 'k');
    const url = new URL(await sb.downloadUrl(f, 600));
    const res = await recordedFetch(`${ctx.daemon.apiUrl}/sandbox/${sb.id}/signing-key`, {
      headers: { Authorization: 'Bearer test', Accept: 'application/json' },
    });
    assert.equal(res.status, 200);
    const body = await res.text();
    let key;
    try {
      key = JSON.parse(body);
    } catch {
      key = body;
    }
    assert.equal(typeof key, 'string');
    const expires = url.searchParams.get('expires');
    assert.ok(Number(expires) > Date.now() / 1000 + 500);
    assert.equal(url.searchParams.get('signature'), expectedSignature(key, 'GET', f, expires));
  });

  test('downloadUrl with ttl 0 never expires', async () => {
    const d = testDir(ctx, 'ttl0');
    const f = path.join(d, 'forever.txt');
    fs.writeFileSync(f, 'forever');
    const url = await sb.downloadUrl(f, 0);
    assert.equal(new URL(url).searchParams.get('expires'), '0');
    const res = await recordedFetch(url);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'forever');
  });

  test('uploadUrl: multipart field "file"', async () => {
    const d = testDir(ctx, 'ul-multipart');
    const dst = path.join(d, 'new dir', 'up + é.bin');
    const payload = crypto.randomBytes(200_000);
    const url = await sb.uploadUrl(dst);
    assert.ok(new URL(url).pathname.endsWith(`/${sb.id}/files/upload-v2`));
    const form = new FormData();
    form.append('file', new Blob([payload]), 'ignored-name.bin');
    const res = await recordedFetch(url, { method: 'POST', body: form });
    assert.ok(res.ok, `${res.status} ${await res.text()}`);
    assert.deepEqual(fs.readFileSync(dst), payload);
  });

  test('uploadUrl: raw body', async () => {
    const d = testDir(ctx, 'ul-raw');
    const dst = path.join(d, 'raw.bin');
    const payload = crypto.randomBytes(100_000);
    const url = await sb.uploadUrl(dst);
    const res = await recordedFetch(url, {
      method: 'POST',
      body: payload,
      headers: { 'Content-Type': 'application/octet-stream' },
    });
    assert.ok(res.ok, `${res.status} ${await res.text()}`);
    assert.deepEqual(fs.readFileSync(dst), payload);
  });

  test('rotateSigningKey: new key, new URLs work', async () => {
    const d = testDir(ctx, 'rotate');
    const f = path.join(d, 'r.txt');
    fs.writeFileSync(f, 'rotated');
    const before = new URL(await sb.downloadUrl(f, 0)).searchParams.get('signature');
    await sb.rotateSigningKey();
    const url = await sb.downloadUrl(f, 0);
    assert.notEqual(new URL(url).searchParams.get('signature'), before, 'key changed');
    const res = await recordedFetch(url);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'rotated');
  });

  // The same single-file routes, straight at the toolbox listener (no proxy prefix).
  test('direct: GET /files/download with signature params, headers', async () => {
    const d = testDir(ctx, 'direct-dl');
    const f = path.join(d, 'é + x.txt');
    fs.writeFileSync(f, 'direct download');
    const q = new URLSearchParams({ path: f, expires: '0', signature: 'x' });
    const res = await recordedFetch(`${ctx.daemon.toolboxUrl}/files/download?${q}`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'direct download');
    assert.equal(res.headers.get('content-type'), 'application/octet-stream');
    const cd = res.headers.get('content-disposition') ?? '';
    assert.match(cd, /attachment/);
    const star = /filename\*=utf-8''([^;\s]+)/i.exec(cd);
    assert.ok(star, `no filename* in ${cd}`);
    assert.equal(decodeURIComponent(star[1]), 'é + x.txt');
  });

  test('direct: GET /files/download missing file is 404', async () => {
    const q = new URLSearchParams({ path: path.join(ctx.daemon.workdir, 'nope.txt') });
    const res = await recordedFetch(`${ctx.daemon.toolboxUrl}/files/download?${q}`);
    assert.equal(res.status, 404);
  });

  test('direct: POST /files/upload-v2 (multipart and raw)', async () => {
    const d = testDir(ctx, 'direct-ul');
    const dst1 = path.join(d, 'm p.bin');
    const form = new FormData();
    form.append('file', new Blob([Buffer.from('multipart direct')]), 'x');
    let res = await recordedFetch(`${ctx.daemon.toolboxUrl}/files/upload-v2?${new URLSearchParams({ path: dst1, expires: '0', signature: 'x' })}`, {
      method: 'POST',
      body: form,
    });
    assert.ok(res.ok, `${res.status} ${await res.text()}`);
    assert.equal(fs.readFileSync(dst1, 'utf8'), 'multipart direct');

    const dst2 = path.join(d, 'sub', 'r+aw.bin');
    res = await recordedFetch(`${ctx.daemon.toolboxUrl}/files/upload-v2?${new URLSearchParams({ path: dst2 })}`, {
      method: 'POST',
      body: Buffer.from('raw direct'),
      headers: { 'Content-Type': 'application/octet-stream' },
    });
    assert.ok(res.ok, `${res.status} ${await res.text()}`);
    assert.equal(fs.readFileSync(dst2, 'utf8'), 'raw direct');
  });

  test('control plane: get, list, setLabels, getPreviewLink', async () => {
    const got = await ctx.daytona.get(sb.id);
    assert.equal(got.id, sb.id);
    assert.equal(got.state, 'started');
    const ids = [];
    for await (const s of ctx.daytona.list()) ids.push(s.id);
    assert.ok(ids.includes(sb.id));
    const labels = await sb.setLabels({ a: 'b', 'code-toolbox-language': 'python' });
    assert.deepEqual(labels, { a: 'b', 'code-toolbox-language': 'python' });
    const link = await sb.getPreviewLink(8080);
    assert.equal(typeof link.url, 'string');
    assert.ok(link.url.includes('8080'));
  });
});
