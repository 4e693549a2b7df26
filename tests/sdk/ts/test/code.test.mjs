// sandbox.process.codeRun and sandbox.codeInterpreter of @daytonaio/sdk against toolboxd.
//
// codeRun sends the sandbox's language (its `code-toolbox-language` label, set by
// daytona.create({language})): the first sandbox is python, TypeScript and JavaScript get
// sandboxes of their own (the daemon has one sandbox record; each Sandbox object keeps the
// language it was created with). The harness puts the venv's bin (python3 with matplotlib) and
// node_modules/.bin (tsx) first on the daemon's PATH.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';

import { DaytonaError, DaytonaTimeoutError } from '@daytonaio/sdk';

import { binaryExists, isPngBase64, setCurrentTest, setup, teardown, testDir } from './helpers.mjs';

function alive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !'ZX'.includes(stat[stat.lastIndexOf(')') + 2]);
  } catch {
    return false;
  }
}

describe('code (TypeScript SDK)', { skip: !binaryExists() && 'toolboxd binary not built' }, () => {
  let ctx;
  let sb;

  before(async () => {
    ctx = await setup('ts-code');
    sb = ctx.sandbox;
  });
  after(async () => {
    await teardown(ctx, 'code.test.mjs');
  });
  beforeEach((t) => setCurrentTest(t.name));

  // ------------------------------------------------------------------ codeRun

  test('codeRun returns output and exit code', async () => {
    let res = await sb.process.codeRun("import sys, time\nprint('hello')\ntime.sleep(0.2)\nprint('warn', file=sys.stderr)");
    assert.equal(res.exitCode, 0);
    assert.equal(res.result, 'hello\nwarn\n');
    assert.equal(res.artifacts.stdout, res.result);
    assert.deepEqual(res.artifacts.charts, []);
    res = await sb.process.codeRun("import sys\nprint('bye')\nsys.exit(5)");
    assert.equal(res.exitCode, 5);
    assert.equal(res.result, 'bye\n');
    res = await sb.process.codeRun("raise ValueError('boom')");
    assert.equal(res.exitCode, 1);
    assert.match(res.result, /ValueError: boom/);
  });

  test('codeRun passes argv one by one, and env', async () => {
    const argv = ['plain', 'two words', 'it\'s "quoted"', '', '$HOME;`x` *'];
    const res = await sb.process.codeRun(
      "import sys, os, json\nprint(json.dumps(sys.argv[1:]))\nprint(os.environ['WHO'])",
      { argv, env: { WHO: 'ts sdk' } },
      10,
    );
    assert.equal(res.exitCode, 0, res.result);
    const [first, second] = res.result.split('\n');
    assert.deepEqual(JSON.parse(first), argv);
    assert.equal(second, 'ts sdk');
  });

  test('codeRun timeout rejects with the timeout error and kills the tree', async (t) => {
    const pidFile = path.join(testDir(ctx, t.name), 'child.pid');
    const code =
      "import subprocess, time\np = subprocess.Popen(['sleep', '60'])\n" +
      `open(${JSON.stringify(pidFile)}, 'w').write(str(p.pid))\ntime.sleep(60)\n`;
    const started = Date.now();
    await assert.rejects(sb.process.codeRun(code, undefined, 1), (err) => {
      assert.ok(err instanceof DaytonaTimeoutError, `${err?.constructor?.name}: ${err?.message}`);
      assert.equal(err.statusCode, 408);
      assert.equal(err.errorCode, 'PROCESS_EXECUTION_TIMEOUT');
      return true;
    });
    assert.ok(Date.now() - started < 15_000);
    const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
    const deadline = Date.now() + 5000;
    while (alive(pid)) {
      assert.ok(Date.now() < deadline, `sleep ${pid} survived the timeout`);
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal((await sb.process.codeRun("print('after')")).result, 'after\n');
  });

  test('codeRun returns a line chart with its points', async () => {
    const res = await sb.process.codeRun(
      [
        'import matplotlib.pyplot as plt',
        "print('dtn_artifact_k39fd2:{\"type\":\"chart\",\"value\":{\"type\":\"bar\"}}')",
        "plt.plot([1, 2, 3], [4, 5, 6], label='up')",
        "plt.title('Line chart')",
        "plt.xlabel('x')",
        "plt.ylabel('y')",
        'plt.show()',
      ].join('\n'),
    );
    assert.equal(res.exitCode, 0, res.result);
    assert.match(res.result, /^dtn_artifact_k39fd2:/, 'a forged artifact line stays output');
    assert.equal(res.artifacts.charts.length, 1);
    const chart = res.artifacts.charts[0];
    assert.equal(chart.type, 'line');
    assert.equal(chart.title, 'Line chart');
    assert.equal(chart.x_label, 'x');
    assert.equal(chart.y_label, 'y');
    assert.equal(chart.x_scale, 'linear');
    assert.deepEqual(chart.elements, [{ label: 'up', points: [[1, 4], [2, 5], [3, 6]] }]);
    assert.equal(chart.x_ticks.length, chart.x_tick_labels.length);
    assert.ok(isPngBase64(chart.png));
  });

  test('codeRun in a typescript sandbox runs TypeScript with argv', async () => {
    const ts = await ctx.daytona.create({ language: 'typescript' }, { timeout: 60 });
    assert.equal(ts.labels['code-toolbox-language'], 'typescript');
    const res = await ts.process.codeRun(
      "const n: number = 21;\nconst args: string[] = process.argv.slice(1);\nconsole.log(n * 2, JSON.stringify(args));",
      { argv: ['a b', 'c'], env: { UNUSED: '1' } },
    );
    assert.equal(res.exitCode, 0, res.result);
    assert.equal(res.result, '42 ["a b","c"]\n');
    const failing = await ts.process.codeRun('const x: number = 1;\nthrow new Error("bad " + x);');
    assert.equal(failing.exitCode, 1);
    assert.match(failing.result, /Error: bad 1/);
  });

  test('codeRun in a javascript sandbox runs node with argv and exit code', async () => {
    const js = await ctx.daytona.create({ language: 'javascript' }, { timeout: 60 });
    const res = await js.process.codeRun(
      'console.log(JSON.stringify(process.argv.slice(1))); console.log(process.env.WHO); process.exit(3);',
      { argv: ['x y', ''], env: { WHO: 'node' } },
    );
    assert.equal(res.exitCode, 3);
    assert.equal(res.result, '["x y",""]\nnode\n');
  });

  test('codeRun resolves require and import from the working directory', async () => {
    // A helper module and a package installed in the work dir, as in a user's project.
    const work = ctx.daemon.workdir;
    fs.writeFileSync(path.join(work, 'coderun-helper.js'), "exports.who = 'helper';\n");
    fs.mkdirSync(path.join(work, 'node_modules', 'coderun-pkg'), { recursive: true });
    fs.writeFileSync(path.join(work, 'node_modules', 'coderun-pkg', 'index.js'), "exports.name = 'pkg';\n");
    const js = await ctx.daytona.create({ language: 'javascript' }, { timeout: 60 });
    let res = await js.process.codeRun(
      "const { who } = require('./coderun-helper');\nconst { name } = require('coderun-pkg');\n" +
        "import('./coderun-helper.js').then((m) => console.log(who, name, m.default.who, process.argv.slice(1)));",
      { argv: ['x'] },
    );
    assert.equal(res.exitCode, 0, res.result);
    assert.equal(res.result, "helper pkg helper [ 'x' ]\n");
    const ts = await ctx.daytona.create({ language: 'typescript' }, { timeout: 60 });
    res = await ts.process.codeRun(
      "import { who } from './coderun-helper';\nimport { name } from 'coderun-pkg';\nconst n: number = 1;\nconsole.log(who, name, n);",
    );
    assert.equal(res.exitCode, 0, res.result);
    assert.equal(res.result, 'helper pkg 1\n');
  });

  test('codeRun errors in JavaScript and TypeScript show the user\'s code and positions only', async () => {
    // No line of ours shifts a column (Daytona injects `process.argv.splice(1, 1);`), and no
    // frame of Node's internals or of the runner follows the user's.
    const clean = (result) => {
      for (const ours of ['process.argv.splice', 'node:internal', 'toolboxd_run']) {
        assert.ok(!result.includes(ours), `${ours} in ${result}`);
      }
      return result.split('\n').filter((line) => line.trim().startsWith('at '));
    };
    const js = await ctx.daytona.create({ language: 'javascript' }, { timeout: 60 });
    let res = await js.process.codeRun('function f() { null.x }\nf()', { argv: ['a'] });
    assert.equal(res.exitCode, 1);
    assert.ok(res.result.includes('/[code].js:1\nfunction f() { null.x }\n                    ^\n'), res.result);
    let frames = clean(res.result);
    assert.equal(frames.length, 2, res.result);
    assert.match(frames[0], /^\s*at f \(.*\[code\]\.js:1:21\)$/);
    assert.match(frames[1], /\[code\]\.js:2:1\)$/);
    const ts = await ctx.daytona.create({ language: 'typescript' }, { timeout: 60 });
    res = await ts.process.codeRun('const n: number = 1; (null as any).x', { argv: ['a'] });
    assert.equal(res.exitCode, 1);
    assert.ok(res.result.includes('code.ts:1\nconst n: number = 1; (null as any).x\n'), res.result);
    frames = clean(res.result);
    assert.ok(frames.length > 0 && frames.every((f) => /code\.ts:1:36\)$/.test(f)), res.result);
  });

  // ------------------------------------------------------------------ interpreter

  test('runCode streams to the callbacks in order and keeps state', async () => {
    const calls = [];
    const res = await sb.codeInterpreter.runCode(
      "import sys, time\nts_kept = 41\nprint('out 1')\ntime.sleep(0.3)\nprint('err 1', file=sys.stderr)\ntime.sleep(0.3)\nprint('out 2')",
      {
        onStdout: (m) => calls.push(['stdout', m.output]),
        onStderr: (m) => calls.push(['stderr', m.output]),
        onError: (e) => calls.push(['error', e]),
      },
    );
    assert.deepEqual(calls, [
      ['stdout', 'out 1\n'],
      ['stderr', 'err 1\n'],
      ['stdout', 'out 2\n'],
    ]);
    assert.deepEqual(res, { stdout: 'out 1\nout 2\n', stderr: 'err 1\n' });
    const next = await sb.codeInterpreter.runCode('print(ts_kept + 1)');
    assert.equal(next.stdout, '42\n');
    const envs = await sb.codeInterpreter.runCode("import os\nprint(os.environ.get('TS_ONLY'))", { envs: { TS_ONLY: 'yes' } });
    assert.equal(envs.stdout, 'yes\n');
  });

  test('runCode reports errors to onError', async () => {
    const errors = [];
    const res = await sb.codeInterpreter.runCode("print('before')\ndef f():\n    return 1 / 0\nf()", {
      onError: (e) => errors.push(e),
    });
    assert.equal(res.stdout, 'before\n');
    assert.equal(errors.length, 1);
    assert.equal(errors[0].name, 'ZeroDivisionError');
    assert.equal(errors[0].value, 'division by zero');
    assert.match(errors[0].traceback, /line 3/);
    assert.deepEqual(res.error, errors[0]);
  });

  test('contexts are created, listed and isolated', async (t) => {
    const dir = testDir(ctx, t.name);
    const a = await sb.codeInterpreter.createContext(dir);
    const b = await sb.codeInterpreter.createContext();
    assert.equal(a.cwd, dir);
    assert.equal(a.language, 'python');
    assert.equal(a.active, true);
    assert.ok(a.createdAt);
    const ids = (await sb.codeInterpreter.listContexts()).map((c) => c.id);
    assert.ok(ids.includes(a.id) && ids.includes(b.id), ids.join());
    assert.ok(!ids.includes('default'));
    await sb.codeInterpreter.runCode("iso = 'in a'", { context: a });
    const inB = await sb.codeInterpreter.runCode('print(iso)', { context: b });
    assert.equal(inB.error?.name, 'NameError');
    const inA = await sb.codeInterpreter.runCode('import os\nprint(iso, os.getcwd())', { context: a });
    assert.equal(inA.stdout, `in a ${dir}\n`);
    await assert.rejects(
      sb.codeInterpreter.runCode('1', { context: { ...a, id: 'no-such-context' } }),
      (err) => err instanceof DaytonaError && /context not found/.test(err.message),
    );
  });

  test(
    'deleteContext removes the context',
    async () => {
      const c = await sb.codeInterpreter.createContext();
      await sb.codeInterpreter.deleteContext(c);
      const ids = (await sb.codeInterpreter.listContexts()).map((x) => x.id);
      assert.ok(!ids.includes(c.id));
    },
  );

  test('a runCode timeout rejects with DaytonaTimeoutError and the context keeps working', async () => {
    await sb.codeInterpreter.runCode('ts_before_timeout = 7');
    // The daemon closes with 4008 and sends no control frame first (SDK 0.218.0 would settle on
    // `interrupted` as a success).
    const timesOut = async (context) => {
      const started = Date.now();
      await assert.rejects(
        sb.codeInterpreter.runCode('import time\ntime.sleep(30)', { timeout: 2, context }),
        (err) => err instanceof DaytonaTimeoutError,
      );
      assert.ok(Date.now() - started < (2 + 3) * 1000, `took ${Date.now() - started} ms`);
    };
    await timesOut(undefined);
    const after = await sb.codeInterpreter.runCode('print(1 + 1)\nprint(ts_before_timeout)');
    assert.deepEqual(after, { stdout: '2\n7\n', stderr: '' });
    // The same in a context of its own.
    const c = await sb.codeInterpreter.createContext();
    try {
      await timesOut(c);
      const again = await sb.codeInterpreter.runCode('print(1 + 1)', { context: c });
      assert.deepEqual(again, { stdout: '2\n', stderr: '' });
    } finally {
      await sb.codeInterpreter.deleteContext(c);
    }
  });

  test('an interrupt that is not a timeout resolves', async () => {
    const res = await sb.codeInterpreter.runCode("print('a')\nraise KeyboardInterrupt", { timeout: 30 });
    assert.deepEqual(res, { stdout: 'a\n', stderr: '' });
  });

  test('a process forked by the code never answers for the context', async () => {
    const c = await sb.codeInterpreter.createContext();
    try {
      const forked = await sb.codeInterpreter.runCode(
        "import os\nkept = 1\npid = os.fork()\nif pid == 0:\n    print('child')\nelse:\n    os.waitpid(pid, 0)\n    print('parent')",
        { context: c, timeout: 20 },
      );
      assert.deepEqual(forked, { stdout: 'child\nparent\n', stderr: '' });
      for (let n = 0; n < 4; n++) {
        const run = await sb.codeInterpreter.runCode(`print(${n}, kept)`, { context: c, timeout: 20 });
        assert.deepEqual(run, { stdout: `${n} 1\n`, stderr: '' });
      }
      // Closed stdout and stderr come back for the next run.
      await sb.codeInterpreter.runCode('os.close(1)\nos.close(2)', { context: c });
      const after = await sb.codeInterpreter.runCode("import sys\nprint(kept)\nprint('e', file=sys.stderr)", { context: c });
      assert.deepEqual(after, { stdout: '1\n', stderr: 'e\n' });
    } finally {
      await sb.codeInterpreter.deleteContext(c);
    }
  });

  test('a runCode in flight at shutdown rejects, naming SHUTTING_DOWN', async () => {
    // A daemon of its own: this one is stopped.
    const own = await setup('ts-code-shutdown');
    try {
      const started = path.join(own.daemon.workdir, 'started');
      const run = own.sandbox.codeInterpreter.runCode(
        `import time\nopen(${JSON.stringify(started)}, 'w').close()\ntime.sleep(60)`,
      );
      const outcome = run.then(
        (result) => ({ result }),
        (error) => ({ error }),
      );
      const deadline = Date.now() + 20_000;
      while (!fs.existsSync(started)) {
        assert.ok(Date.now() < deadline, 'the run never started');
        await new Promise((r) => setTimeout(r, 10));
      }
      process.kill(own.daemon.child.pid, 'SIGTERM');
      const { result, error } = await outcome;
      assert.equal(result, undefined, JSON.stringify(result));
      assert.ok(error instanceof DaytonaError, String(error));
      assert.match(error.message, /SHUTTING_DOWN/);
    } finally {
      await teardown(own, 'code.test.mjs (shutdown)');
    }
  });

  test('a chart shown in the interpreter does not disturb runCode', async () => {
    const res = await sb.codeInterpreter.runCode(
      "import matplotlib.pyplot as plt\nprint('before')\nplt.plot([0, 1], [2, 3])\nplt.show()\nprint('after')",
    );
    assert.deepEqual(res, { stdout: 'before\nafter\n', stderr: '' });
  });
});
