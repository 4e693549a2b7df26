// A TypeScript client generated from openapi/toolbox.json works: openapi-typescript turns the
// document into types (test/generated/toolbox.d.ts, made here, not checked in), tsc checks
// test/generated/driver.ts against them, and the driver, on openapi-fetch, drives upload, list,
// download, execute, a session command and git status against a daemon.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';

import { binaryExists, startDaemon } from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const generated = path.join(here, 'generated');
const bin = (name) => path.join(here, '..', 'node_modules', '.bin', name);
const document = path.join(here, '..', '..', '..', '..', 'openapi', 'toolbox.json');

let daemon;
before(async () => {
  if (binaryExists()) daemon = await startDaemon('openapi-ts');
});
after(async () => {
  await daemon?.stop();
  fs.rmSync(path.join(generated, 'toolbox.d.ts'), { force: true });
});

test('a client generated with openapi-typescript + openapi-fetch drives the daemon', { skip: !binaryExists() }, () => {
  execFileSync(bin('openapi-typescript'), [document, '--output', path.join(generated, 'toolbox.d.ts')], {
    stdio: 'pipe',
  });
  execFileSync(
    bin('tsc'),
    ['--noEmit', '--strict', '--skipLibCheck', '--target', 'es2022', '--module', 'nodenext',
      '--moduleResolution', 'nodenext', '--lib', 'es2022,dom', path.join(generated, 'driver.ts')],
    { stdio: 'pipe' },
  );
  const out = execFileSync(bin('tsx'), [path.join(generated, 'driver.ts')], {
    env: { ...process.env, TOOLBOX_URL: daemon.toolboxUrl },
    encoding: 'utf8',
  });
  const got = JSON.parse(out.trim().split('\n').pop());
  assert.deepEqual(got, {
    upload: 200,
    names: ['hello.txt'],
    downloaded: 'hello from openapi-fetch\n',
    missing: { status: 404, code: 'FILE_NOT_FOUND' },
    execute: { exitCode: 0, result: 'hello from openapi-fetch\n' },
    session: 201,
    exec: { exitCode: 0, output: 'from-session\n' },
    init: 201,
    files: ['hello.txt'],
  });
});
