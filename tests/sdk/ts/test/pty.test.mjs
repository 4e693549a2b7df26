// sandbox.process PTYs of @daytonaio/sdk against toolboxd: createPty (the create-connect
// WebSocket; the `ws` client aborts unless X-Daytona-Pty-Exit-Control is echoed), input, resize,
// connectPty (the scrollback comes first), exit codes, list, info and kill.

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import { binaryExists, setCurrentTest, setup, teardown, testDir } from './helpers.mjs';

/** Collects a PTY's output; `until(text)` resolves once the output holds `text`. */
function collector() {
  const decoder = new TextDecoder();
  let text = '';
  let waiters = [];
  return {
    onData(bytes) {
      text += decoder.decode(bytes, { stream: true });
      waiters = waiters.filter((w) => {
        if (!text.includes(w.needle)) return true;
        clearTimeout(w.timer);
        w.resolve(text);
        return false;
      });
    },
    get text() {
      return text;
    },
    until(needle, ms = 30_000) {
      if (text.includes(needle)) return Promise.resolve(text);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${JSON.stringify(needle)} in ${JSON.stringify(text.slice(-2000))}`)), ms);
        waiters.push({ needle, resolve, timer });
      });
    },
  };
}

const id = () => `ts-pty-${Math.random().toString(16).slice(2, 10)}`;

describe('PTY (TypeScript SDK)', { skip: !binaryExists() && 'toolboxd binary not built' }, () => {
  let ctx;
  let sb;

  before(async () => {
    ctx = await setup('ts-pty');
    sb = ctx.sandbox;
  });
  after(async () => {
    await teardown(ctx, 'pty.test.mjs');
  });
  beforeEach((t) => setCurrentTest(t.name));

  test('createPty runs a shell with envs, cwd and size; resize; exit 3', async () => {
    const dir = testDir(ctx, 'pty');
    const out = collector();
    const sessionId = id();
    const handle = await sb.process.createPty({
      id: sessionId,
      cwd: dir,
      envs: { GREETING: 'hello ts' },
      cols: 100,
      rows: 30,
      onData: (data) => out.onData(data),
    });
    assert.ok(handle.isConnected());
    await handle.sendInput('echo "$GREETING in $(pwd) at $(stty size)"\n');
    await out.until(`hello ts in ${dir} at 30 100`);

    const info = await handle.resize(120, 40);
    assert.equal(info.cols, 120);
    assert.equal(info.rows, 40);
    await handle.sendInput("echo now-$(stty size | tr ' ' x)\n");
    await out.until('now-40x120');

    const listed = (await sb.process.listPtySessions()).find((s) => s.id === sessionId);
    assert.equal(listed.active, true);
    assert.equal(listed.envs.TERM, 'xterm-256color');
    const got = await sb.process.getPtySessionInfo(sessionId);
    assert.equal(got.cwd, dir);
    assert.equal(got.lazyStart, false);

    await handle.sendInput('exit 3\n');
    const result = await handle.wait();
    assert.equal(result.exitCode, 3);
    assert.equal(result.error, 'non-zero exit');
    await handle.disconnect();
  });

  test('connectPty replays the scrollback and sees the kill', async () => {
    const sessionId = id();
    const first = await sb.process.createPty({ id: sessionId, onData: () => {} });
    await first.sendInput('echo before-$((6*7))\n');
    await new Promise((r) => setTimeout(r, 300));
    await first.disconnect();

    const out = collector();
    const second = await sb.process.connectPty(sessionId, { onData: (data) => out.onData(data) });
    await out.until('before-42');
    await second.sendInput('echo after-$((7*7))\n');
    await out.until('after-49');

    await second.kill();
    const result = await second.wait();
    assert.equal(result.exitCode, 137);
    assert.equal(result.error, 'SIGKILL');
    await assert.rejects(sb.process.getPtySessionInfo(sessionId));
    await second.disconnect();
  });

  test('a taken id and a missing session are errors', async () => {
    const sessionId = id();
    const handle = await sb.process.createPty({ id: sessionId, onData: () => {} });
    await assert.rejects(sb.process.createPty({ id: sessionId, onData: () => {} }));
    await assert.rejects(sb.process.connectPty(`${sessionId}-missing`, { onData: () => {} }), /not found/);
    await handle.kill();
    await handle.wait();
    await handle.disconnect();
  });
});
