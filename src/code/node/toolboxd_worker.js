// toolboxd's stateful JavaScript interpreter worker.
//
// Jobs arrive as JSON lines on fd 3 ({"code", "envs"}); frames leave as JSON lines on fd 4:
// {"type": "error", "name", "value", "traceback"} and last {"type": "control", "text":
// "completed" | "interrupted"}. console output goes to the real stdout and stderr, which toolboxd
// reads and turns into stdout/stderr frames. Top-level `var`, `let`, `const` and functions persist
// from job to job (one script context); a job whose value is a promise is awaited.
// No child holds the protocol pipes: Node marks inherited descriptors (fds 3 and 4 here)
// close-on-exec as it starts, and child_process and cluster start new programs by exec.
'use strict';

const fs = require('fs');
const Module = require('module');
const path = require('path');
const readline = require('readline');
const vm = require('vm');

const send = (type, fields) => {
  const frame = Object.assign({ type, text: '', name: '', value: '', traceback: '' }, fields);
  fs.writeSync(4, JSON.stringify(frame) + '\n');
};

// SIGINT interrupts the running job (breakOnSigint), never the worker.
let interrupted = null;
process.on('SIGINT', () => {
  if (interrupted) interrupted();
});
process.on('unhandledRejection', (reason) => {
  process.stderr.write(`Unhandled promise rejection: ${reason && reason.stack ? reason.stack : reason}\n`);
});

// The user's `require` and `import()` resolve from the context's working directory (its
// `./helper.js`, its `node_modules`), as `node -` there would, never from this file's temp dir.
globalThis.require = Module.createRequire(path.join(process.cwd(), '[interpreter].js'));
// Node's own loader for `import()` in a script (it resolves from the working directory); Node
// 20 calls it experimental and warns once: that warning is not the user's output.
const importModuleDynamically = vm.constants && vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER;
const emitWarning = process.emitWarning;
process.emitWarning = function (warning, ...rest) {
  if (String(warning && warning.message ? warning.message : warning).includes('USE_MAIN_CONTEXT_DEFAULT_LOADER')) return;
  return emitWarning.call(process, warning, ...rest);
};

// The stack down to the user's code: the worker's own frames and node:vm's are cut.
const userStack = (stack) => {
  const lines = String(stack || '').split('\n');
  const end = lines.findIndex((line, i) => i > 0 && /node:vm|toolboxd_worker\.js|sigintHandlersWrap/.test(line));
  return (end === -1 ? lines : lines.slice(0, end)).join('\n');
};

const errorFrame = (err) => {
  if (err instanceof Error || (err && typeof err === 'object' && 'message' in err)) {
    return { name: String(err.name || 'Error'), value: String(err.message), traceback: userStack(err.stack) };
  }
  return { name: 'Error', value: String(err), traceback: '' };
};

async function run(job) {
  const saved = {};
  for (const [key, value] of Object.entries(job.envs || {})) {
    saved[key] = process.env[key];
    process.env[key] = String(value);
  }
  let status = 'completed';
  const stop = new Promise((resolve) => {
    interrupted = () => resolve('interrupted');
  });
  try {
    const script = new vm.Script(job.code || '', { filename: '<stdin>', importModuleDynamically });
    let result = script.runInThisContext({ breakOnSigint: true, displayErrors: false });
    if (result && typeof result.then === 'function') {
      const outcome = await Promise.race([Promise.resolve(result).then(() => 'completed'), stop]);
      if (outcome === 'interrupted') status = 'interrupted';
    }
  } catch (err) {
    if (err && err.code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED') {
      status = 'interrupted';
    } else {
      send('error', errorFrame(err));
    }
  } finally {
    interrupted = null;
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
  send('control', { text: status });
}

const jobs = readline.createInterface({ input: fs.createReadStream(null, { fd: 3 }) });
let queue = Promise.resolve();
jobs.on('line', (line) => {
  queue = queue.then(async () => {
    let job;
    try {
      job = JSON.parse(line);
    } catch (err) {
      send('error', { name: 'ProtocolError', value: 'malformed job' });
      send('control', { text: 'completed' });
      return;
    }
    await run(job);
  });
});
jobs.on('close', () => queue.then(() => process.exit(0)));
