// The MCP server at /mcp driven by the official TypeScript MCP SDK (@modelcontextprotocol/sdk):
// Client over StreamableHTTPClientTransport (the 2025-11-25 revision, with sessions). Every tool
// is called (the SDK checks each structured result against the tool's output schema), schemas
// compile as JSON Schema, a chart arrives as a PNG, a `sleep 100` is cancelled with its tree, a
// clone reports progress, a failing tool is isError, and a client reconnects with its session id.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';

import { binaryExists, isPngBase64, recordedFetch, reportNon2xx, setCurrentTest, startDaemon } from './helpers.mjs';

const TOOLS = [
  'create_folder', 'delete_file', 'download_file', 'execute_command', 'get_file_info', 'git_clone',
  'git_commit', 'git_status', 'list_files', 'move_file', 'preview_link', 'replace_in_files', 'run_code',
  'search_files', 'session_exec', 'session_logs', 'session_start', 'upload_file',
];

/** True once `pid` has exited (gone, or a zombie about to be reaped). */
function gone(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return ['Z', 'X'].includes(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
  } catch {
    return true;
  }
}

async function waitUntil(predicate, what, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) assert.fail(`gave up waiting (${ms} ms) for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function text(result) {
  return result.content.filter((c) => c.type === 'text').map((c) => c.text).join('');
}

describe('MCP server (TypeScript MCP SDK)', { skip: !binaryExists() && 'toolboxd binary not built' }, () => {
  let daemon;
  let url;
  let client;
  let dir;
  let n = 0;

  async function connect(options = {}) {
    const c = new Client({ name: 'toolboxd-ts-test', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(url), options);
    await c.connect(transport);
    return { client: c, transport };
  }

  before(async () => {
    daemon = await startDaemon('ts-mcp');
    url = `${daemon.toolboxUrl}/mcp`;
    ({ client } = await connect());
    await client.listTools(); // the SDK validates structured results against these schemas
  });
  after(async () => {
    await client?.close();
    reportNon2xx('mcp.test.mjs');
    await daemon?.stop();
  });
  beforeEach((t) => {
    setCurrentTest(t.name);
    dir = path.join(daemon.workdir, `${String(++n).padStart(2, '0')}-${t.name.replace(/[^A-Za-z0-9]+/g, '_')}`);
    fs.mkdirSync(dir, { recursive: true });
  });

  test('lists every tool with schemas that compile and honest annotations', async () => {
    const { tools } = await client.listTools();
    assert.deepEqual(tools.map((t) => t.name).sort(), TOOLS);
    const ajv = new AjvJsonSchemaValidator();
    for (const tool of tools) {
      assert.equal(tool.inputSchema.type, 'object', tool.name);
      ajv.getValidator(tool.inputSchema);
      if (tool.outputSchema) ajv.getValidator(tool.outputSchema);
      for (const hint of ['readOnlyHint', 'destructiveHint', 'idempotentHint', 'openWorldHint']) {
        assert.equal(typeof tool.annotations[hint], 'boolean', `${tool.name} ${hint}`);
      }
    }
    const byName = Object.fromEntries(tools.map((t) => [t.name, t]));
    assert.equal(byName.get_file_info.annotations.readOnlyHint, true);
    assert.equal(byName.delete_file.annotations.destructiveHint, true);
    assert.equal(byName.git_clone.annotations.openWorldHint, true);
  });

  test('file tools', async () => {
    const call = (name, args) => client.callTool({ name, arguments: args });
    const up = await call('upload_file', { file_path: path.join(dir, 'x/y.txt'), content: 'one\ntwo\n' });
    assert.deepEqual(up.structuredContent, { path: path.join(dir, 'x/y.txt'), bytes: 8 });
    assert.equal(text(await call('download_file', { file_path: path.join(dir, 'x/y.txt') })), 'one\ntwo\n');
    const info = await call('get_file_info', { file_path: path.join(dir, 'x/y.txt') });
    assert.equal(info.structuredContent.size, 8);
    await call('create_folder', { folder_path: path.join(dir, 'made') });
    assert.ok(fs.statSync(path.join(dir, 'made')).isDirectory());
    const listed = await call('list_files', { path: dir });
    assert.deepEqual(listed.structuredContent.entries.map((e) => e.name), ['made', 'x']);
    await call('move_file', { source_path: path.join(dir, 'x/y.txt'), dest_path: path.join(dir, 'made/z.txt') });
    assert.equal(fs.readFileSync(path.join(dir, 'made/z.txt'), 'utf8'), 'one\ntwo\n');
    const deleted = await call('delete_file', { file_path: path.join(dir, 'made'), recursive: true });
    assert.equal(deleted.isError, false);
    assert.ok(!fs.existsSync(path.join(dir, 'made')));
  });

  test('search, replace, commands and sessions', async () => {
    const call = (name, args) => client.callTool({ name, arguments: args });
    fs.writeFileSync(path.join(dir, 'a.txt'), 'alpha\nbeta\n');
    const found = await call('search_files', { path: dir, pattern: 'beta' });
    assert.deepEqual(found.structuredContent.matches.map((m) => m.line), [2]);
    const names = await call('search_files', { path: dir, pattern: '*.txt', mode: 'name' });
    assert.equal(names.structuredContent.files.length, 1);
    const replaced = await call('replace_in_files', { files: [path.join(dir, 'a.txt')], pattern: 'beta', new_value: 'gamma' });
    assert.equal(replaced.structuredContent.results[0].replacements, 1);
    assert.equal(fs.readFileSync(path.join(dir, 'a.txt'), 'utf8'), 'alpha\ngamma\n');

    const ran = await call('execute_command', { command: 'cat a.txt; echo bad >&2; exit 4', cwd: dir });
    assert.deepEqual(ran.structuredContent, { exit_code: 4, stdout: 'alpha\ngamma\n', stderr: 'bad\n', truncated: false });

    await call('session_start', { session_id: 'ts-mcp' });
    const { structuredContent: launched } = await call('session_exec', { session_id: 'ts-mcp', command: 'echo from-session' });
    let logs;
    for (let i = 0; i < 300 && logs?.running !== false; i++) {
      logs = (await call('session_logs', { session_id: 'ts-mcp', command_id: launched.command_id })).structuredContent;
      if (logs.running) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(logs.output, 'from-session\n');
    assert.equal(logs.exit_code, 0);
  });

  test('git clone reports progress; status and commit', async () => {
    const origin = path.join(dir, 'origin');
    fs.mkdirSync(origin);
    const env = { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@e', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@e' };
    const git = (...args) => execFileSync('git', args, { cwd: origin, env, stdio: 'pipe' });
    git('init', '-q', '-b', 'main');
    for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(origin, `f${i}.txt`), `file ${i}\n`);
    git('add', '.');
    git('commit', '-q', '-m', 'init');

    const progress = [];
    const cloned = await client.callTool(
      { name: 'git_clone', arguments: { url: `file://${origin}`, path: path.join(dir, 'copy') } },
      undefined,
      { onprogress: (p) => progress.push(p) },
    );
    assert.equal(cloned.isError, false, text(cloned));
    assert.ok(fs.existsSync(path.join(dir, 'copy/f19.txt')));
    assert.ok(progress.length > 0, 'no progress for the clone');
    assert.ok(progress.every((p, i) => p.total === 100 && (i === 0 || p.progress > progress[i - 1].progress)));

    fs.writeFileSync(path.join(dir, 'copy/new.txt'), 'n\n');
    const status = await client.callTool({ name: 'git_status', arguments: { path: path.join(dir, 'copy') } });
    assert.deepEqual(status.structuredContent.files.map((f) => [f.name, f.worktree]), [['new.txt', 'Untracked']]);
    const commit = await client.callTool({
      name: 'git_commit',
      arguments: { path: path.join(dir, 'copy'), message: 'add new', files: ['new.txt'], author: 'T', email: 't@example.com' },
    });
    assert.match(commit.structuredContent.hash, /^[0-9a-f]{40}$/);
  });

  test('run_code returns each chart as a PNG image and as chart data', async () => {
    const code = 'import matplotlib.pyplot as plt\nplt.bar(["a", "b"], [3, 5])\nplt.title("bars")\nplt.show()\n';
    const result = await client.callTool({ name: 'run_code', arguments: { code } });
    assert.equal(result.isError, false, text(result));
    const images = result.content.filter((c) => c.type === 'image');
    assert.equal(images.length, 1);
    assert.equal(images[0].mimeType, 'image/png');
    assert.ok(isPngBase64(images[0].data));
    assert.equal(result.structuredContent.charts[0].type, 'bar');
    assert.equal(result.structuredContent.charts[0].title, 'bars');
    assert.equal(result.structuredContent.charts[0].png, undefined);
  });

  test('preview_link builds the proxy URL and checks the port', async () => {
    const server = net.createServer().listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const { port } = server.address();
    try {
      const result = await client.callTool({ name: 'preview_link', arguments: { port } });
      assert.equal(result.structuredContent.url, `${daemon.toolboxUrl}/proxy/${port}/`);
      assert.equal(result.structuredContent.listening, true);
    } finally {
      server.close();
    }
  });

  test('a failing tool is an isError result, not a protocol error', async () => {
    const result = await client.callTool({ name: 'download_file', arguments: { file_path: path.join(dir, 'missing') } });
    assert.equal(result.isError, true);
    assert.match(text(result), /file not found.*FILE_NOT_FOUND/);
    await assert.rejects(client.callTool({ name: 'execute_command', arguments: { command: ['not', 'a', 'string'] } }), /-32602/);
  });

  test('cancelling a sleep 100 kills its process tree', async () => {
    const pids = path.join(dir, 'pids');
    const controller = new AbortController();
    const call = client.callTool(
      { name: 'execute_command', arguments: { command: `(sleep 100 & echo $! >> ${pids}; wait) & echo $! >> ${pids}; echo $$ >> ${pids}; wait` } },
      undefined,
      { signal: controller.signal },
    );
    await waitUntil(() => fs.existsSync(pids) && fs.readFileSync(pids, 'utf8').trim().split('\n').length === 3, 'the tree to start');
    controller.abort('enough');
    await assert.rejects(call);
    const tree = fs.readFileSync(pids, 'utf8').trim().split('\n').map(Number);
    await waitUntil(() => tree.every(gone), `processes ${tree} to end`);
  });

  test('reconnecting with the session id keeps the session', async () => {
    const file = path.join(dir, 'watched.txt');
    fs.writeFileSync(file, 'v1');
    const first = await connect();
    const sessionId = first.transport.sessionId;
    assert.ok(sessionId);
    await first.client.subscribeResource({ uri: `file://${file}` });
    await first.client.close(); // the connection goes; the session stays (no DELETE)

    const second = await connect({ sessionId });
    assert.equal(second.transport.sessionId, sessionId);
    const { tools } = await second.client.listTools();
    assert.equal(tools.length, TOOLS.length);
    const ran = await second.client.callTool({ name: 'execute_command', arguments: { command: 'echo again' } });
    assert.equal(ran.structuredContent.stdout, 'again\n');
    await second.transport.terminateSession();
    assert.equal(second.transport.sessionId, undefined);
    await second.client.close();

    const stale = await recordedFetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': sessionId },
      body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list' }),
    });
    assert.equal(stale.status, 404);
  });

  test('a subscribed resource tells of its changes', async () => {
    const file = path.join(dir, 'data.json');
    fs.writeFileSync(file, '{}');
    const updated = [];
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => updated.push(n.params.uri));
    const read = await client.readResource({ uri: `file://${file}` });
    assert.equal(read.contents[0].text, '{}');
    await client.subscribeResource({ uri: `file://${file}` });
    await client.callTool({ name: 'upload_file', arguments: { file_path: file, content: '{"a":1}', overwrite: true } });
    await waitUntil(() => updated.includes(`file://${file}`), 'notifications/resources/updated');
    await client.unsubscribeResource({ uri: `file://${file}` });
  });

  test('a foreign browser origin is refused with the wire error body', async () => {
    const res = await recordedFetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', origin: 'https://evil.example' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: {} }),
    });
    assert.equal(res.status, 403);
    const body = await res.json();
    assert.equal(body.code, 'FORBIDDEN');
    assert.equal(body.source, 'DAYTONA_DAEMON');
  });
});
