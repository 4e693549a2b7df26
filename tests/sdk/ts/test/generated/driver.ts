// Drives toolboxd through openapi-fetch typed by `toolbox.d.ts`, which
// generated-client.test.mjs generates beside this file from openapi/toolbox.json with
// openapi-typescript (and type-checks with tsc before running). Prints what it got as JSON.
import createClient from 'openapi-fetch';

import type { paths } from './toolbox.js';

const client = createClient<paths>({ baseUrl: process.env.TOOLBOX_URL });
const text = 'hello from openapi-fetch\n';

const form = new FormData();
form.append('file', new Blob([text]), 'hello.txt');
const upload = await client.POST('/files/upload', {
  params: { query: { path: 'tsgen/hello.txt' } },
  body: { file: '' },
  bodySerializer: () => form,
});

const list = await client.GET('/files', { params: { query: { path: 'tsgen' } } });

const download = await client.GET('/files/download', {
  params: { query: { path: 'tsgen/hello.txt' } },
  parseAs: 'text',
});

const missing = await client.GET('/files/info', { params: { query: { path: 'tsgen/missing.txt' } } });

const execute = await client.POST('/process/execute', { body: { command: 'cat tsgen/hello.txt' } });

const session = await client.POST('/process/session', { body: { sessionId: 'tsgen' } });
const exec = await client.POST('/process/session/{session_id}/exec', {
  params: { path: { session_id: 'tsgen' } },
  body: { command: 'echo from-session' },
});

const init = await client.POST('/git/init', { body: { path: 'tsgen' } });
const status = await client.GET('/git/status', { params: { query: { path: 'tsgen' } } });

console.log(
  JSON.stringify({
    upload: upload.response.status,
    names: list.data?.map((entry) => entry.name),
    downloaded: download.data,
    missing: { status: missing.response.status, code: missing.error?.code },
    execute: { exitCode: execute.data?.exitCode, result: execute.data?.result },
    session: session.response.status,
    exec: { exitCode: exec.data?.exitCode, output: exec.data?.output },
    init: init.response.status,
    files: status.data?.fileStatus.map((file) => file.name),
  }),
);
