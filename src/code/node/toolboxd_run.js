// toolboxd's code-run preload for JavaScript and TypeScript (`node --require=<this> code.js …`,
// `tsx --require=<this> code.ts …`, `ts-node -r <this> code.ts …`). The user's file is run as it
// was written, so every line and column in an error is the user's own. As the main module
// starts, this:
//
// - removes the script path from `process.argv`, Daytona's convention: the first argument is
//   `process.argv[1]`;
// - makes `require()` and `import()` resolve from the working directory, as for Daytona's
//   `node -` (code on stdin): relative paths against it, bare names in its `node_modules` and
//   those above. The code is compiled under a name in that directory, `<cwd>/[code].js` (or
//   `.ts`), which exists nowhere: no file is written there. That name is the module's
//   `filename`, `__filename` and the referrer of `import()`, so Node's own resolution (and
//   tsx's, which hooks it) starts from the directory, for CommonJS and for ES modules alike.
//   Under ts-node the code keeps its real name, since ts-node finds its source maps by that
//   name; ts-node compiles `import()` to `require()` (module CommonJS), which resolves from the
//   module's `filename` and `paths`, and those are set the same way;
// - trims the stack traces the program shows to the user's frames: Node's internal frames
//   (`node:internal/…`), this file's, and every frame below the last one in the user's file (the
//   runner that called it) are left out. Source-mapped positions (tsx) stay mapped: the trimmed
//   frames go to the formatter that was installed before (tsx's, or Node's own), if any;
// - takes itself out of `process.execArgv`, so a `child_process.fork()` of the program starts a
//   plain node.
'use strict';

const fs = require('fs');
const Module = require('module');
const path = require('path');

const self = __filename;
const real = (file) => {
  try {
    return fs.realpathSync(file);
  } catch {
    return file;
  }
};

for (let i = 0; i < process.execArgv.length; i++) {
  const arg = process.execArgv[i];
  if ((arg === '-r' || arg === '--require') && real(process.execArgv[i + 1] || '') === self) {
    process.execArgv.splice(i, 2);
    i -= 1;
  } else if (arg.startsWith('--require=') && real(arg.slice('--require='.length)) === self) {
    process.execArgv.splice(i, 1);
    i -= 1;
  }
}

// The main module is the file `process.argv[1]` names when it is compiled (ts-node sets argv
// only after its preloads ran, so it is looked up then).
const compile = Module.prototype._compile;
Module.prototype._compile = function (content, filename) {
  if (process.argv.length > 1 && filename === real(process.argv[1])) {
    Module.prototype._compile = compile;
    process.argv.splice(1, 1);
    const args = Array.from(arguments);
    let dir;
    try {
      dir = process.cwd();
    } catch {
      // The working directory was removed: resolve from the file's.
    }
    if (dir !== undefined) {
      const name = path.join(dir, `[code]${path.extname(filename)}`);
      this.filename = name;
      this.path = dir;
      this.paths = Module._nodeModulePaths(dir);
      if (!process[Symbol.for('ts-node.register.instance')]) args[1] = name;
    }
    trimStacks(args[1]);
    return compile.apply(this, args);
  }
  return compile.apply(this, arguments);
};

function trimStacks(main) {
  const previous = Error.prepareStackTrace;
  Error.prepareStackTrace = function (error, frames) {
    let last = -1;
    frames.forEach((frame, index) => {
      if (frame.getFileName() === main) last = index;
    });
    const kept = (last === -1 ? frames : frames.slice(0, last + 1)).filter((frame) => {
      const file = frame.getFileName() || '';
      return !file.startsWith('node:internal/') && file !== self;
    });
    let head;
    try {
      head = Error.prototype.toString.call(error);
    } catch {
      head = 'Error';
    }
    if (kept.length === 0 && error instanceof SyntaxError) {
      // A syntax error in the program: every frame is Node's compiler, and Node prints the line
      // and a caret above. The file alone stands for the frames (without any frame, Node would
      // print the whole error in brackets).
      return `${head}\n    at ${main}`;
    }
    // Nothing left otherwise (an error raised inside Node alone) keeps Node's frames.
    const shown = kept.length > 0 ? kept : frames.filter((frame) => frame.getFileName() !== self);
    if (typeof previous === 'function') return previous.call(this, error, shown);
    return head + shown.map((frame) => `\n    at ${frame}`).join('');
  };
}
