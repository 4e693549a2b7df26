// Shared harness: starts toolboxd, points the unmodified @daytonaio/sdk at its
// sdk-api listener, and records every HTTP response the SDK gets.
//
// Binary: $TOOLBOXD_BIN, or <repo>/target/debug/toolboxd.
// The daemon runs with --workdir <tmp>/work, HOME=<tmp>/home and cwd <tmp>.

import { spawn } from 'node:child_process';
import diagnosticsChannel from 'node:diagnostics_channel';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

import { Daytona } from '@daytonaio/sdk';

const here = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(here, '..', '..', '..', '..');
const LISTEN_RE = /toolboxd: (toolbox|sdk-api|terminal) listening on (http:\/\/\S+)/;
const STARTUP_TIMEOUT_MS = Number(process.env.TOOLBOXD_STARTUP_TIMEOUT ?? 30) * 1000;

export function toolboxdBin() {
  return process.env.TOOLBOXD_BIN || path.join(REPO, 'target', 'debug', 'toolboxd');
}

export function binaryExists() {
  try {
    return fs.statSync(toolboxdBin()).isFile();
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- recording

/** @type {{test: string, method: string, url: string, status: number}[]} */
export const responses = [];
let currentTest = '<setup>';
export function setCurrentTest(name) {
  currentTest = name;
}

// http/https module traffic (axios: every SDK call)
diagnosticsChannel.subscribe('http.client.response.finish', ({ request, response }) => {
  const host = request.host ?? request.getHeader?.('host') ?? '';
  responses.push({
    test: currentTest,
    method: request.method,
    url: `http://${host}${request.path}`,
    status: response.statusCode,
  });
});

/** Record a fetch() made by a test itself (fetch does not go through node:http). */
export async function recordedFetch(url, init) {
  const res = await fetch(url, init);
  responses.push({ test: currentTest, method: init?.method ?? 'GET', url: String(url), status: res.status });
  return res;
}

export function reportNon2xx(label) {
  const bad = responses.filter((r) => r.status < 200 || r.status > 299);
  const lines = bad.map((r) => {
    const u = new URL(r.url);
    const kind = u.pathname.startsWith('/api/') ? 'control-plane' : u.pathname.startsWith('/toolbox/') ? 'toolbox' : 'direct';
    return `[${kind}] ${r.method} ${u.pathname}${u.search} -> ${r.status}  (${r.test})`;
  });
  console.log(
    `\n=== ${label}: SDK/HTTP responses with non-2xx (${bad.length} of ${responses.length}) ===\n` +
      (lines.length ? lines.join('\n') : 'none'),
  );
}

// ---------------------------------------------------------------- daemon

export async function startDaemon(prefix = 'ts', extraArgs = []) {
  const root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), `toolboxd-sdk-${prefix}-`)));
  const workdir = path.join(root, 'work');
  const home = path.join(root, 'home');
  fs.mkdirSync(workdir);
  fs.mkdirSync(home);
  const logPath = path.join(root, 'toolboxd.log');
  const log = fs.openSync(logPath, 'a');

  const env = { ...process.env, HOME: home, RUST_BACKTRACE: '1' };
  for (const k of Object.keys(env)) if (k.startsWith('DAYTONA_')) delete env[k];
  // codeRun and the interpreter run python3/tsx from the daemon's PATH: put first the venv's
  // bin (its python3 has matplotlib, for charts) and this package's tsx (for TypeScript).
  const firstOnPath = [path.join(REPO, 'target', 'sdk-venv', 'bin'), path.join(here, '..', 'node_modules', '.bin')];
  env.PATH = [...firstOnPath.filter((d) => fs.existsSync(d)), process.env.PATH].filter(Boolean).join(path.delimiter);

  const child = spawn(
    toolboxdBin(),
    // The terminal and SSH on free ports too (never the defaults 22222 and 22220: suites run
    // side by side).
    ['--toolbox-addr', '127.0.0.1:0', '--sdk-api-addr', '127.0.0.1:0', '--terminal-addr', '127.0.0.1:0', '--ssh-addr', '127.0.0.1:0', '--workdir', workdir, ...extraArgs],
    { cwd: root, env, stdio: ['ignore', 'pipe', log], detached: true },
  );
  fs.closeSync(log);

  const urls = await new Promise((resolve, reject) => {
    const found = {};
    const timer = setTimeout(() => reject(new Error(`toolboxd did not print its listeners in time; log: ${logPath}`)), STARTUP_TIMEOUT_MS);
    const rl = readline.createInterface({ input: child.stdout });
    rl.on('line', (line) => {
      fs.appendFileSync(logPath, `[stdout] ${line}\n`);
      const m = LISTEN_RE.exec(line);
      if (m) {
        found[m[1]] = m[2].replace(/\/+$/, '');
        if (found.toolbox && found['sdk-api'] && found.terminal) {
          clearTimeout(timer);
          resolve(found);
        }
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`toolboxd exited with ${code} before listening:\n${fs.readFileSync(logPath, 'utf8')}`));
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });

  return {
    root,
    workdir,
    home,
    logPath,
    child,
    toolboxUrl: urls.toolbox,
    terminalUrl: urls.terminal,
    sdkApiUrl: urls['sdk-api'],
    apiUrl: `${urls['sdk-api']}/api`,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        try {
          process.kill(-child.pid, 'SIGTERM');
        } catch {}
        const t = setTimeout(() => {
          try {
            process.kill(-child.pid, 'SIGKILL');
          } catch {}
        }, 10_000);
        await exited;
        clearTimeout(t);
      }
      if (!process.env.TOOLBOXD_KEEP_TMP) fs.rmSync(root, { recursive: true, force: true });
      else console.log(`kept daemon dir ${root}`);
    },
  };
}

/** Start a daemon, build a Daytona client against it and create the sandbox. */
export async function setup(prefix) {
  const daemon = await startDaemon(prefix);
  const daytona = new Daytona({ apiUrl: daemon.apiUrl, apiKey: 'test' });
  const t0 = Date.now();
  const sandbox = await daytona.create(undefined, { timeout: 60 });
  const createMs = Date.now() - t0;
  return { daemon, daytona, sandbox, createMs };
}

export async function teardown(ctx, label) {
  reportNon2xx(label);
  if (!ctx) return;
  try {
    await ctx.daytona?.[Symbol.asyncDispose]?.();
  } catch {}
  await ctx.daemon?.stop();
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/** Whether `b64` is base64 text of a PNG file. */
export function isPngBase64(b64) {
  return typeof b64 === 'string' && Buffer.from(b64, 'base64').subarray(0, 8).equals(PNG_SIGNATURE);
}

let counter = 0;
/** A fresh directory inside the daemon's workdir; returns its absolute path. */
export function testDir(ctx, name) {
  const d = path.join(ctx.daemon.workdir, `${String(++counter).padStart(2, '0')}-${name.replace(/[^A-Za-z0-9_.-]+/g, '_')}`);
  fs.mkdirSync(d, { recursive: true });
  return d;
}
