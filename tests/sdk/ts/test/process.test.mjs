// sandbox.process of @daytonaio/sdk against toolboxd: executeCommand, sessions, and the session
// log stream (a WebSocket the TS client demultiplexes itself; it offers no subprotocol, and any
// close code ends the stream).

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import { binaryExists, setCurrentTest, setup, teardown } from './helpers.mjs';

describe('process (TypeScript SDK)', { skip: !binaryExists() && 'toolboxd binary not built' }, () => {
  let ctx;
  let sb;

  before(async () => {
    ctx = await setup('ts-process');
    sb = ctx.sandbox;
  });
  after(async () => {
    await teardown(ctx, 'process.test.mjs');
  });
  beforeEach((t) => setCurrentTest(t.name));

  test('executeCommand returns the exit code and output', async () => {
    const res = await sb.process.executeCommand('echo out; echo err >&2; exit 2');
    assert.equal(res.exitCode, 2);
    assert.match(res.result, /out\n/);
    assert.match(res.result, /err\n/);
  });

  test('session state persists and a sync command returns its streams', async () => {
    await sb.process.createSession('ts-state');
    await sb.process.executeSessionCommand('ts-state', { command: 'export TS_VAR=kept; cd /tmp' });
    const res = await sb.process.executeSessionCommand('ts-state', { command: 'echo "$TS_VAR $(pwd)"; echo e >&2' });
    assert.equal(res.exitCode, 0);
    assert.equal(res.stdout, 'kept /tmp\n');
    assert.equal(res.stderr, 'e\n');
    await sb.process.deleteSession('ts-state');
  });

  test('output is plain text without stream markers; stdout and stderr stay split', async () => {
    await sb.process.createSession('ts-output');
    // Pauses keep the arrival order across the two pipes certain.
    const res = await sb.process.executeSessionCommand('ts-output', {
      command: 'echo out; sleep 0.3; echo err >&2; sleep 0.3; printf tail',
    });
    assert.equal(res.exitCode, 0);
    assert.equal(res.output, 'out\nerr\ntail');
    assert.equal(res.stdout, 'out\ntail');
    assert.equal(res.stderr, 'err\n');
    const logs = await sb.process.getSessionCommandLogs('ts-output', res.cmdId);
    assert.deepEqual(logs, { output: 'out\nerr\ntail', stdout: 'out\ntail', stderr: 'err\n' });
    // The log WebSocket keeps the markers: the SDK demuxes them itself.
    let stdout = '';
    let stderr = '';
    await sb.process.getSessionCommandLogs('ts-output', res.cmdId, (c) => (stdout += c), (c) => (stderr += c));
    assert.deepEqual([stdout, stderr], ['out\ntail', 'err\n']);
    await sb.process.deleteSession('ts-output');
  });

  test('the log stream delivers stdout and stderr live and ends after the command', async () => {
    await sb.process.createSession('ts-logs');
    const started = await sb.process.executeSessionCommand('ts-logs', {
      command: "printf 'first '; sleep 1; printf 'second\\n'; printf 'oops\\n' >&2; sleep 0.2; printf 'é\\n'",
      runAsync: true,
    });
    assert.ok(started.cmdId);
    let stdout = '';
    let stderr = '';
    let firstChunkAt;
    const begin = Date.now();
    await sb.process.getSessionCommandLogs(
      'ts-logs',
      started.cmdId,
      (chunk) => {
        if (firstChunkAt === undefined) firstChunkAt = Date.now() - begin;
        stdout += chunk;
      },
      (chunk) => {
        stderr += chunk;
      },
    );
    assert.equal(stdout, 'first second\né\n');
    assert.equal(stderr, 'oops\n');
    assert.ok(firstChunkAt < 900, `the partial line arrived after ${firstChunkAt} ms`);
    const command = await sb.process.getSessionCommand('ts-logs', started.cmdId);
    assert.equal(command.exitCode, 0);
    // A finished command replays and ends at once.
    let replay = '';
    await sb.process.getSessionCommandLogs('ts-logs', started.cmdId, (c) => (replay += c), () => {});
    assert.equal(replay, stdout);
    await sb.process.deleteSession('ts-logs');
  });

  test('updateEnv refuses what no process can start with (400), and nothing changes', async () => {
    for (const env of [{ TS_NUL: 'a\u0000b' }, { TS_BIG: 'x'.repeat(1_500_000) }, { 'A=B': 'x' }]) {
      await assert.rejects(sb.updateEnv(env), (err) => err.statusCode === 400 && /environment variable/.test(err.message));
    }
    const res = await sb.process.executeCommand('echo ${TS_NUL-unset} ${TS_BIG-unset}');
    assert.equal(res.result, 'unset unset\n');
  });

  test('70 KB of input to a command that never reads it is accepted, then 410 once it ended', async () => {
    await sb.process.createSession('ts-input');
    const started = await sb.process.executeSessionCommand('ts-input', { command: 'sleep 1', runAsync: true });
    await sb.process.sendSessionCommandInput('ts-input', started.cmdId, 'x'.repeat(70_000));
    let command;
    for (let i = 0; i < 600; i++) {
      command = await sb.process.getSessionCommand('ts-input', started.cmdId);
      if (command.exitCode !== undefined && command.exitCode !== null) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(command.exitCode, 0);
    await assert.rejects(
      sb.process.sendSessionCommandInput('ts-input', started.cmdId, 'late'),
      (err) => err.statusCode === 410,
    );
    await sb.process.deleteSession('ts-input');
  });
});
