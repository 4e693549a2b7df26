// sandbox.fs of @daytonaio/sdk against toolboxd. The TS client differs from the
// Python one on the wire: bulk-upload parts are interleaved per file
// (files[i].path, files[i].file, ...) and sent chunked, the file part's
// filename is basename(destination), and query strings come from
// URLSearchParams (space = '+', '+' = '%2B').

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, beforeEach, describe, test } from 'node:test';

import {
  DaytonaConflictError,
  DaytonaError,
  DaytonaFileNotFoundError,
  DaytonaNotFoundError,
} from '@daytonaio/sdk';

import { binaryExists, setCurrentTest, setup, teardown, testDir } from './helpers.mjs';

const MiB = 1024 * 1024;
const sha = (buf) => crypto.createHash('sha256').update(buf).digest('hex');
const perm = (p) => fs.statSync(p).mode & 0o777;

const AWKWARD = ['with space.txt', 'plus+sign.txt', 'both + and space.txt', 'é日本.txt', "q'uote&amp=1%20.txt"];

// Bytes that a multipart parser could take for framing: the boundary toolboxd used to send on
// every bulk download (a file holding it came back cut short, with no error), a closing
// delimiter, the start of the boundary it sends now, CRLFs and NULs.
const OLD_BOUNDARY = 'DAYTONA-FILE-BOUNDARY';
function framingPayloads() {
  const fakePart = Buffer.from(
    `\r\n--${OLD_BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="evil"\r\nContent-Length: 4\r\n\r\nevil`,
  );
  const closing = Buffer.from(`\r\n--${OLD_BOUNDARY}--\r\n`);
  // The report's file: 1,064,960 bytes, then a closing delimiter and a tail (1,064,996 bytes).
  const report = Buffer.concat([crypto.randomBytes(1_064_960), closing, Buffer.from('trailer')]);
  assert.equal(report.length, 1_064_996);
  const crlfNul = Buffer.concat([Buffer.from('\r\n'.repeat(5000)), Buffer.alloc(5000), Buffer.from('\r\n--\r\n\r\n--toolboxd-\r\n--\0')]);
  return {
    'report.bin': report,
    'fake-part.bin': Buffer.concat([crypto.randomBytes(300_000), fakePart, crypto.randomBytes(300_000), fakePart]),
    // Right after the part headers' CRLF CRLF, a file that starts with `--BOUNDARY` makes
    // `CRLF--BOUNDARY` with the headers' last CRLF.
    'starts-with-delimiter.bin': Buffer.concat([Buffer.from(`--${OLD_BOUNDARY}--\r\n`), crypto.randomBytes(1000), closing]),
    'crlf-nul.bin': Buffer.concat(Array(20).fill(crlfNul)),
    'only-closing.bin': closing,
  };
}

describe('fs (TypeScript SDK)', { skip: !binaryExists() && 'toolboxd binary not built' }, () => {
  let ctx;
  let sb;
  let local;

  before(async () => {
    ctx = await setup('ts-fs');
    sb = ctx.sandbox;
    local = fs.mkdtempSync(path.join(os.tmpdir(), 'toolboxd-sdk-ts-local-'));
  });
  after(async () => {
    if (local) fs.rmSync(local, { recursive: true, force: true });
    await teardown(ctx, 'fs.test.mjs');
  });
  beforeEach((t) => setCurrentTest(t.name));

  test('create() returned a started sandbox quickly', () => {
    assert.equal(sb.state, 'started');
    assert.ok(ctx.createMs < 10_000, `create() took ${ctx.createMs} ms`);
    assert.equal(sb.toolboxProxyUrl.replace(/\/+$/, ''), `${ctx.daemon.sdkApiUrl}/toolbox`);
  });

  test('getWorkDir / getUserHomeDir', async () => {
    assert.equal(await sb.getWorkDir(), ctx.daemon.workdir);
    assert.equal(await sb.getUserHomeDir(), ctx.daemon.home);
  });

  test('uploadFiles: several files, interleaved + chunked, nested new dirs, awkward names', async () => {
    const d = testDir(ctx, 'upload-many');
    const big = crypto.randomBytes(8 * MiB + 3);
    const localSrc = path.join(local, 'from-disk.bin');
    fs.writeFileSync(localSrc, crypto.randomBytes(123_457));
    const files = [
      { source: Buffer.from('one\n'), destination: path.join(d, 'one.txt') },
      { source: Buffer.from('nested'), destination: path.join(d, 'new', 'nested dir', 'two.txt') },
      { source: big, destination: path.join(d, 'big.bin') },
      { source: localSrc, destination: path.join(d, 'from-disk.bin') },
      { source: Buffer.alloc(0), destination: path.join(d, 'empty.txt') },
      // same basename (the TS part filename) in two directories: the daemon must use files[i].path
      { source: Buffer.from('left'), destination: path.join(d, 'l', 'same.txt') },
      { source: Buffer.from('right'), destination: path.join(d, 'r', 'same.txt') },
      ...AWKWARD.map((n, i) => ({ source: Buffer.from(`#${i} ${n}`), destination: path.join(d, 'odd', n) })),
    ];
    await sb.fs.uploadFiles(files);

    assert.equal(fs.readFileSync(path.join(d, 'one.txt'), 'utf8'), 'one\n');
    assert.equal(fs.readFileSync(path.join(d, 'new', 'nested dir', 'two.txt'), 'utf8'), 'nested');
    assert.equal(sha(fs.readFileSync(path.join(d, 'big.bin'))), sha(big));
    assert.deepEqual(fs.readFileSync(path.join(d, 'from-disk.bin')), fs.readFileSync(localSrc));
    assert.equal(fs.statSync(path.join(d, 'empty.txt')).size, 0);
    assert.equal(fs.readFileSync(path.join(d, 'l', 'same.txt'), 'utf8'), 'left');
    assert.equal(fs.readFileSync(path.join(d, 'r', 'same.txt'), 'utf8'), 'right');
    assert.deepEqual(fs.readdirSync(path.join(d, 'odd')).sort(), [...AWKWARD].sort());
    AWKWARD.forEach((n, i) => assert.equal(fs.readFileSync(path.join(d, 'odd', n), 'utf8'), `#${i} ${n}`));
  });

  test('uploadFile (Buffer and local path) and uploadFileStream', async () => {
    const d = testDir(ctx, 'upload-single');
    await sb.fs.uploadFile(Buffer.from('buffer body'), path.join(d, 'b.txt'));
    assert.equal(fs.readFileSync(path.join(d, 'b.txt'), 'utf8'), 'buffer body');

    const src = path.join(local, 'single.bin');
    fs.writeFileSync(src, crypto.randomBytes(70_000));
    await sb.fs.uploadFile(src, path.join(d, 'single.bin'));
    assert.deepEqual(fs.readFileSync(path.join(d, 'single.bin')), fs.readFileSync(src));

    const payload = crypto.randomBytes(3 * MiB + 1);
    let sent = 0;
    await sb.fs.uploadFileStream(Readable.from([payload.subarray(0, MiB), payload.subarray(MiB)]), path.join(d, 's p+ace', 'stream.bin'), {
      onProgress: (p) => {
        sent = p.bytesSent;
      },
    });
    assert.equal(sha(fs.readFileSync(path.join(d, 's p+ace', 'stream.bin'))), sha(payload));
    assert.equal(sent, payload.length);
  });

  test('downloadFile to memory and to a local path; downloadFileStream', async () => {
    const d = testDir(ctx, 'download');
    const content = crypto.randomBytes(2 * MiB + 11);
    fs.writeFileSync(path.join(d, 'x.bin'), content);
    fs.writeFileSync(path.join(d, 'empty'), '');

    const buf = await sb.fs.downloadFile(path.join(d, 'x.bin'));
    assert.ok(Buffer.isBuffer(buf));
    assert.equal(sha(buf), sha(content));
    assert.equal((await sb.fs.downloadFile(path.join(d, 'empty'))).length, 0);

    const localDst = path.join(local, 'dl', 'x.bin');
    await sb.fs.downloadFile(path.join(d, 'x.bin'), localDst);
    assert.equal(sha(fs.readFileSync(localDst)), sha(content));

    let total;
    let received = 0;
    const stream = await sb.fs.downloadFileStream(path.join(d, 'x.bin'), {
      onProgress: (p) => {
        received = p.bytesReceived;
        total = p.totalBytes;
      },
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.equal(sha(Buffer.concat(chunks)), sha(content));
    assert.equal(received, content.length);
    assert.equal(total, content.length, 'part Content-Length becomes totalBytes');
  });

  test('downloadFile, downloadFileStream: bytes that look like multipart framing come back whole', async () => {
    const d = testDir(ctx, 'download-framing');
    const payloads = framingPayloads();
    for (const [name, content] of Object.entries(payloads)) {
      fs.writeFileSync(path.join(d, name), content);
      const want = [content.length, sha(content)];
      const buf = await sb.fs.downloadFile(path.join(d, name));
      assert.deepEqual([buf.length, sha(buf)], want, name);
      const localDst = path.join(local, 'framing', name);
      await sb.fs.downloadFile(path.join(d, name), localDst);
      const copy = fs.readFileSync(localDst);
      assert.deepEqual([copy.length, sha(copy)], want, name);
      const chunks = [];
      for await (const c of await sb.fs.downloadFileStream(path.join(d, name))) chunks.push(c);
      const streamed = Buffer.concat(chunks);
      assert.deepEqual([streamed.length, sha(streamed)], want, name);
    }
  });

  test('downloadFiles: bytes that look like multipart framing come back whole', async () => {
    const d = testDir(ctx, 'download-many-framing');
    const payloads = framingPayloads();
    const names = Object.keys(payloads);
    // Every file twice in one bulk download: to memory and to a local path (under two names:
    // the SDK matches parts to requests by source path).
    for (const name of names) {
      fs.writeFileSync(path.join(d, `mem-${name}`), payloads[name]);
      fs.writeFileSync(path.join(d, `disk-${name}`), payloads[name]);
    }
    const res = await sb.fs.downloadFiles([
      ...names.map((n) => ({ source: path.join(d, `mem-${n}`) })),
      ...names.map((n) => ({ source: path.join(d, `disk-${n}`), destination: path.join(local, 'framing-many', n) })),
    ]);
    assert.equal(res.length, 2 * names.length);
    const bySource = new Map(res.map((r) => [r.source, r]));
    for (const n of names) {
      const want = [payloads[n].length, sha(payloads[n])];
      const mem = bySource.get(path.join(d, `mem-${n}`));
      assert.equal(mem.error, undefined, `${n}: ${mem.error}`);
      const got = Buffer.from(mem.result);
      assert.deepEqual([got.length, sha(got)], want, n);
      const disk = bySource.get(path.join(d, `disk-${n}`));
      assert.equal(disk.error, undefined, `${n}: ${disk.error}`);
      assert.equal(disk.result, path.join(local, 'framing-many', n));
      const copy = fs.readFileSync(disk.result);
      assert.deepEqual([copy.length, sha(copy)], want, n);
    }
  });

  test('downloadFiles: several, one missing', async () => {
    const d = testDir(ctx, 'download-many');
    fs.writeFileSync(path.join(d, 'a.txt'), 'AAA');
    AWKWARD.forEach((n) => fs.writeFileSync(path.join(d, n), `content ${n}`));
    const res = await sb.fs.downloadFiles([
      { source: path.join(d, 'a.txt') },
      { source: path.join(d, 'missing file.txt') },
      ...AWKWARD.map((n) => ({ source: path.join(d, n) })),
    ]);
    assert.equal(res.length, 2 + AWKWARD.length);
    const bySource = new Map(res.map((r) => [r.source, r]));
    assert.equal(Buffer.from(bySource.get(path.join(d, 'a.txt')).result).toString(), 'AAA');
    const missing = bySource.get(path.join(d, 'missing file.txt'));
    assert.equal(missing.result, undefined);
    assert.ok(missing.error, 'missing file carries an error');
    assert.equal(missing.errorDetails?.statusCode, 404);
    assert.equal(missing.errorDetails?.code, 'FILE_NOT_FOUND');
    for (const n of AWKWARD) {
      const r = bySource.get(path.join(d, n));
      assert.equal(r.error, undefined, `${n}: ${r.error}`);
      assert.equal(Buffer.from(r.result).toString(), `content ${n}`);
    }
  });

  test('downloadFiles: memory and local destination', async () => {
    const d = testDir(ctx, 'download-dest');
    fs.writeFileSync(path.join(d, 'a.txt'), 'AAA');
    fs.writeFileSync(path.join(d, 'b.txt'), 'BBBB');
    const localB = path.join(local, 'dest', 'b.txt');
    const [a, b] = await sb.fs.downloadFiles([{ source: path.join(d, 'a.txt') }, { source: path.join(d, 'b.txt'), destination: localB }]);
    assert.equal(a.error, undefined);
    assert.equal(Buffer.from(a.result).toString(), 'AAA');
    assert.equal(b.error, undefined);
    assert.equal(b.result, localB);
    assert.equal(fs.readFileSync(localB, 'utf8'), 'BBBB');
  });

  test('getFileDetails fields and types', async () => {
    const d = testDir(ctx, 'details');
    const f = path.join(d, 'info + x.txt');
    fs.writeFileSync(f, 'hello world');
    fs.chmodSync(f, 0o644);
    const info = await sb.fs.getFileDetails(f);
    assert.equal(info.name, 'info + x.txt');
    assert.equal(info.size, 11);
    assert.ok(Number.isInteger(info.size));
    assert.equal(info.isDir, false);
    assert.equal(info.permissions, '0644');
    assert.equal(info.mode, '-rw-r--r--');
    assert.equal(info.owner, String(process.getuid()));
    assert.equal(info.group, String(process.getgid()));
    assert.equal(typeof info.modTime, 'string');
    assert.equal(typeof info.modifiedAt, 'string', 'modifiedAt is required in the TS type');
    const mtime = fs.statSync(f).mtimeMs;
    assert.ok(Math.abs(Date.parse(info.modifiedAt) - mtime) < 2000, `${info.modifiedAt} vs ${new Date(mtime).toISOString()}`);

    const dinfo = await sb.fs.getFileDetails(d);
    assert.equal(dinfo.isDir, true);
    assert.match(dinfo.mode, /^d/);
  });

  test('listFiles with and without depth', async () => {
    const d = testDir(ctx, 'list');
    fs.writeFileSync(path.join(d, 'a b.txt'), '12345');
    fs.mkdirSync(path.join(d, 'sub+dir', 'deeper'), { recursive: true });
    fs.writeFileSync(path.join(d, 'sub+dir', 'é.txt'), 'x');
    fs.writeFileSync(path.join(d, 'sub+dir', 'deeper', 'c.txt'), 'x');

    const one = await sb.fs.listFiles(d);
    assert.deepEqual(one.map((e) => e.name).sort(), ['a b.txt', 'sub+dir']);
    assert.equal(one.find((e) => e.name === 'a b.txt').size, 5);
    assert.equal(one.find((e) => e.name === 'sub+dir').isDir, true);

    const two = await sb.fs.listFiles(d, { depth: 2 });
    assert.ok(two.every((e) => typeof e.path === 'string' && e.path), 'every entry has a path');
    assert.deepEqual(
      two.map((e) => e.path).sort(),
      [path.join(d, 'a b.txt'), path.join(d, 'sub+dir'), path.join(d, 'sub+dir', 'deeper'), path.join(d, 'sub+dir', 'é.txt')].sort(),
    );
  });

  test('findFiles and searchFiles', async () => {
    const d = testDir(ctx, 'find');
    fs.writeFileSync(path.join(d, 'a b.py'), 'import os\nneedle here\n');
    fs.mkdirSync(path.join(d, 'sub'));
    fs.writeFileSync(path.join(d, 'sub', 'é+.py'), 'x\ny\nthe needle\n');
    fs.writeFileSync(path.join(d, 'sub', 'none.txt'), 'nothing\n');

    const matches = await sb.fs.findFiles(d, 'needle');
    assert.deepEqual(
      matches.map((m) => [m.file, m.line, m.content]).sort(),
      [
        [path.join(d, 'a b.py'), 2, 'needle here'],
        [path.join(d, 'sub', 'é+.py'), 3, 'the needle'],
      ].sort(),
    );

    const found = await sb.fs.searchFiles(d, '*.py');
    assert.deepEqual(found.files.sort(), [path.join(d, 'a b.py'), path.join(d, 'sub', 'é+.py')].sort());
  });

  test('a large listing and find arrive whole and in order (both are streamed)', async () => {
    const d = testDir(ctx, 'stream');
    const lines = Array.from({ length: 20 }, (_, i) => `needle ${i + 1}\n`).join('');
    const names = ['a/x', 'a-b', 'a.txt'];
    for (let i = 0; i < 20; i++) {
      for (let j = 0; j < 100; j++) names.push(`d${String(i).padStart(2, '0')}/f${String(j).padStart(3, '0')}.txt`);
    }
    for (const name of names) {
      fs.mkdirSync(path.dirname(path.join(d, name)), { recursive: true });
      fs.writeFileSync(path.join(d, name), lines);
    }
    // The order the SDKs get: names compared bytewise per directory, parents before children.
    const walk = (dir) =>
      fs
        .readdirSync(dir)
        .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
        .flatMap((name) => {
          const p = path.join(dir, name);
          return fs.statSync(p).isDirectory() ? [p, ...walk(p)] : [p];
        });
    const expected = walk(d);
    assert.equal(expected[1], path.join(d, 'a', 'x'));

    const listed = await sb.fs.listFiles(d, { depth: 2 });
    assert.deepEqual(listed.map((e) => e.path), expected);

    const matches = await sb.fs.findFiles(d, 'needle');
    const files = expected.filter((p) => fs.statSync(p).isFile());
    assert.equal(matches.length, files.length * 20);
    assert.deepEqual(
      matches.map((m) => `${m.file}:${m.line}`),
      files.flatMap((f) => Array.from({ length: 20 }, (_, i) => `${f}:${i + 1}`)),
    );
  });

  test('createFolder, setFilePermissions, replaceInFiles, moveFiles, deleteFile', async () => {
    const d = testDir(ctx, 'misc');
    const folder = path.join(d, 'new dir+é', 'inner');
    await sb.fs.createFolder(folder, '750');
    assert.equal(perm(folder), 0o750);

    const f = path.join(d, 'r + s.txt');
    fs.writeFileSync(f, 'foo bar foo');
    await sb.fs.setFilePermissions(f, { mode: '600', owner: String(process.getuid()), group: String(process.getgid()) });
    assert.equal(perm(f), 0o600);

    const res = await sb.fs.replaceInFiles([f, path.join(d, 'missing.txt')], 'foo', 'baz');
    assert.equal(fs.readFileSync(f, 'utf8'), 'baz bar baz');
    const byFile = Object.fromEntries(res.map((r) => [r.file, r]));
    assert.equal(byFile[f].success, true);
    assert.equal(byFile[path.join(d, 'missing.txt')].success, false);

    const moved = path.join(d, 'moved é + x.txt');
    await sb.fs.moveFiles(f, moved);
    assert.ok(!fs.existsSync(f));
    assert.equal(fs.readFileSync(moved, 'utf8'), 'baz bar baz');

    fs.writeFileSync(path.join(d, 'other.txt'), 'o');
    await assert.rejects(sb.fs.moveFiles(moved, path.join(d, 'other.txt')), (e) => e instanceof DaytonaConflictError && e.statusCode === 409);

    await sb.fs.deleteFile(moved);
    assert.ok(!fs.existsSync(moved));
    await assert.rejects(sb.fs.deleteFile(path.join(d, 'new dir+é')), (e) => e instanceof DaytonaError && e.statusCode === 400);
    await sb.fs.deleteFile(path.join(d, 'new dir+é'), true);
    assert.ok(!fs.existsSync(path.join(d, 'new dir+é')));
  });

  test('typed errors: missing file is DaytonaFileNotFoundError', async () => {
    const d = testDir(ctx, 'errors');
    const missing = path.join(d, 'no such + file é.txt');
    await assert.rejects(sb.fs.getFileDetails(missing), (e) => {
      assert.ok(e instanceof DaytonaFileNotFoundError, `${e?.constructor?.name}: ${e?.message} code=${e?.code} source=${e?.source}`);
      assert.ok(e instanceof DaytonaNotFoundError);
      assert.equal(e.statusCode, 404);
      assert.equal(e.code, 'FILE_NOT_FOUND');
      return true;
    });
    await assert.rejects(sb.fs.downloadFile(missing), (e) => {
      assert.ok(e instanceof DaytonaFileNotFoundError, `${e?.constructor?.name}: ${e?.message} code=${e?.code} source=${e?.source}`);
      assert.equal(e.statusCode, 404);
      return true;
    });
    await assert.rejects(sb.fs.listFiles(path.join(d, 'nope')), (e) => e instanceof DaytonaNotFoundError);
  });

  test('downloadFile of /proc files arrives whole; a socket is a 400; a name that is not UTF-8 lists with rawPath', async () => {
    const status = await sb.fs.downloadFile('/proc/self/status');
    assert.ok(status.toString('latin1').startsWith('Name:\ttoolboxd'), status.subarray(0, 40).toString('latin1'));
    const kallsyms = fs.existsSync('/proc/kallsyms') ? fs.readFileSync('/proc/kallsyms') : Buffer.alloc(0);
    if (kallsyms.length > MiB) {
      // More than the daemon reads ahead: streamed whole without a length.
      assert.equal(sha(await sb.fs.downloadFile('/proc/kallsyms')), sha(kallsyms));
    }

    const d = testDir(ctx, 'pseudo-and-raw');
    const sockPath = path.join(d, 'sock');
    const server = net.createServer();
    await new Promise((resolve) => server.listen(sockPath, resolve));
    try {
      await assert.rejects(sb.fs.downloadFile(sockPath), (e) => {
        assert.ok(e instanceof DaytonaError, `${e?.constructor?.name}: ${e?.message}`);
        assert.equal(e.statusCode, 400);
        return true;
      });
      const results = await sb.fs.downloadFiles([{ source: '/proc/cpuinfo' }, { source: sockPath }]);
      assert.ok(results[0].result && results[0].result.length > 0, JSON.stringify(results[0].error));
      assert.equal(results[1].errorDetails?.statusCode, 400);
      assert.equal(results[1].errorDetails?.code, 'INVALID_FILE_PATH');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }

    fs.writeFileSync(Buffer.concat([Buffer.from(`${d}/bad`), Buffer.from([0xff, 0xfe]), Buffer.from('.txt')]), 'x');
    const listed = await sb.fs.listFiles(d);
    const bad = listed.find((f) => f.name === 'bad\ufffd\ufffd.txt');
    assert.ok(bad, JSON.stringify(listed.map((f) => f.name)));
    assert.ok(bad.rawPath.endsWith('/bad%FF%FE.txt'), bad.rawPath);
  });
});
