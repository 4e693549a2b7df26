// sandbox.git of @daytonaio/sdk against toolboxd. The remotes are local bare
// repositories built with the git CLI (file:// URLs); the CLI is isolated from
// the machine's config (HOME=<tmp>, GIT_CONFIG_NOSYSTEM=1, identity via -c) and
// is also used to check what the daemon did. The TS client hands back the
// daemon's JSON as is (status: currentBranch, fileStatus, ...), so these tests
// also pin the wire field names.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';

import {
  DaytonaBadRequestError,
  DaytonaConflictError,
  DaytonaGitBranchExistsError,
  DaytonaGitBranchNotFoundError,
  DaytonaGitPushRejectedError,
  DaytonaGitRepoNotFoundError,
  DaytonaNotFoundError,
} from '@daytonaio/sdk';

import { binaryExists, setCurrentTest, setup, teardown, testDir } from './helpers.mjs';

const AUTHOR = 'TS Tester';
const EMAIL = 'ts-tester@example.com';
const D_LINES = Array.from({ length: 20 }, (_, i) => `line ${i} of a file long enough for rename detection\n`).join('');

// ---------------------------------------------------------------- git CLI

let cliEnv;
function initCli(root) {
  const home = path.join(root, 'cli-home');
  fs.mkdirSync(home, { recursive: true });
  cliEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('GIT_')));
  Object.assign(cliEnv, {
    HOME: home,
    XDG_CONFIG_HOME: path.join(home, '.config'),
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_TERMINAL_PROMPT: '0',
    LC_ALL: 'C',
  });
}
const BASE = [
  '-c', 'user.name=Fixture User',
  '-c', 'user.email=fixture@example.com',
  '-c', 'init.defaultBranch=main',
  '-c', 'protocol.file.allow=always',
  '-c', 'commit.gpgsign=false',
];

/** Run git in cwd, return stdout without the trailing newline (throws on failure). */
function git(cwd, ...args) {
  return execFileSync('git', [...BASE, ...args], { cwd, env: cliEnv, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).replace(/\n$/, '');
}
function gitOk(cwd, ...args) {
  return spawnSync('git', [...BASE, ...args], { cwd, env: cliEnv, stdio: 'ignore' }).status === 0;
}
function commitFile(repo, name, content, message) {
  fs.mkdirSync(path.dirname(path.join(repo, name)), { recursive: true });
  fs.writeFileSync(path.join(repo, name), content);
  git(repo, 'add', '--', name);
  git(repo, 'commit', '-q', '-m', message);
  return git(repo, 'rev-parse', 'HEAD');
}

/**
 * A bare repository with history and the working repo that seeded it (pushes as `origin`).
 * main: c1 (README.md, a.txt="one", b.txt, c.txt, d.txt) <- c2 (a.txt="two", notes.txt)
 * feature: c2 <- feature (feature.txt, a.txt="feature")
 */
function makeRemote(root, name = 'origin') {
  fs.mkdirSync(root, { recursive: true });
  const seed = path.join(root, `${name}-seed`);
  const bare = path.join(root, `${name}.git`);
  git(root, 'init', '-q', '-b', 'main', seed);
  const w = (f, c) => fs.writeFileSync(path.join(seed, f), c);
  w('README.md', '# demo\n');
  w('a.txt', 'one\n');
  w('b.txt', 'bee\n');
  w('c.txt', 'sea\n');
  w('d.txt', D_LINES);
  git(seed, 'add', '.');
  git(seed, 'commit', '-q', '-m', 'c1');
  const c1 = git(seed, 'rev-parse', 'HEAD');
  w('a.txt', 'two\n');
  w('notes.txt', 'notes\n');
  git(seed, 'add', '.');
  git(seed, 'commit', '-q', '-m', 'c2');
  const c2 = git(seed, 'rev-parse', 'HEAD');
  git(seed, 'checkout', '-q', '-b', 'feature');
  w('feature.txt', 'feature\n');
  w('a.txt', 'feature\n');
  git(seed, 'add', '.');
  git(seed, 'commit', '-q', '-m', 'feature work');
  const feature = git(seed, 'rev-parse', 'HEAD');
  git(seed, 'checkout', '-q', 'main');
  git(root, 'init', '-q', '--bare', '-b', 'main', bare);
  git(seed, 'remote', 'add', 'origin', bare);
  git(seed, 'push', '-q', 'origin', 'main', 'feature');
  return {
    bare,
    seed,
    c1,
    c2,
    feature,
    url: `file://${bare}`,
    advance(file, content, message = 'upstream change') {
      git(seed, 'pull', '-q', '--ff-only', 'origin', 'main');
      const sha = commitFile(seed, file, content, message);
      git(seed, 'push', '-q', 'origin', 'main');
      return sha;
    },
  };
}

/** { name: [staging, worktree] } from the status' fileStatus. */
const fileMap = (st) => Object.fromEntries(st.fileStatus.map((f) => [f.name, [f.staging, f.worktree]]));

function expectDaemonError(Cls, status, code) {
  return (e) => {
    assert.ok(e instanceof Cls, `${e?.constructor?.name}: ${e?.message} status=${e?.statusCode} code=${e?.code} source=${e?.source}`);
    assert.equal(e.statusCode, status);
    assert.equal(e.code, code);
    assert.equal(e.source, 'DAYTONA_DAEMON');
    return true;
  };
}

describe('git (TypeScript SDK)', { skip: !binaryExists() && 'toolboxd binary not built' }, () => {
  let ctx;
  let sb;
  let local;
  let n = 0;
  /** A fresh remote for each test (tests push to it). */
  const newRemote = () => makeRemote(path.join(local, `r${++n}`));

  before(async () => {
    ctx = await setup('ts-git');
    sb = ctx.sandbox;
    local = fs.mkdtempSync(path.join(os.tmpdir(), 'toolboxd-sdk-ts-git-'));
    initCli(local);
  });
  after(async () => {
    if (local) fs.rmSync(local, { recursive: true, force: true });
    await teardown(ctx, 'git.test.mjs');
  });
  beforeEach((t) => setCurrentTest(t.name));

  test('clone: default branch, upstream set, work tree checked out', async () => {
    const r = newRemote();
    const repo = path.join(testDir(ctx, 'clone'), 'repo');
    await sb.git.clone(r.url, repo);
    assert.equal(git(repo, 'rev-parse', 'HEAD'), r.c2);
    assert.equal(git(repo, 'symbolic-ref', 'HEAD'), 'refs/heads/main');
    assert.equal(git(repo, 'rev-parse', '--abbrev-ref', 'main@{upstream}'), 'origin/main');
    assert.equal(git(repo, 'remote', 'get-url', 'origin'), r.url);
    assert.equal(fs.readFileSync(path.join(repo, 'a.txt'), 'utf8'), 'two\n');
    assert.equal(git(repo, 'status', '--porcelain'), '');
  });

  test('clone: relative path resolves against the workdir', async () => {
    const r = newRemote();
    const d = testDir(ctx, 'clone-rel');
    const rel = path.relative(ctx.daemon.workdir, d);
    await sb.git.clone(r.url, `${rel}/repo`);
    assert.equal(git(path.join(d, 'repo'), 'rev-parse', 'HEAD'), r.c2);
  });

  test('clone: branch', async () => {
    const r = newRemote();
    const repo = path.join(testDir(ctx, 'clone-branch'), 'repo');
    await sb.git.clone(r.url, repo, 'feature');
    assert.equal(git(repo, 'symbolic-ref', 'HEAD'), 'refs/heads/feature');
    assert.equal(git(repo, 'rev-parse', 'HEAD'), r.feature);
    assert.ok(fs.existsSync(path.join(repo, 'feature.txt')));
    const br = await sb.git.branches(repo);
    assert.equal(br.current, 'feature');
  });

  test('clone: commitId leaves a detached HEAD', async () => {
    const r = newRemote();
    const repo = path.join(testDir(ctx, 'clone-commit'), 'repo');
    await sb.git.clone(r.url, repo, undefined, r.c1);
    assert.equal(git(repo, 'rev-parse', 'HEAD'), r.c1);
    assert.ok(!gitOk(repo, 'symbolic-ref', '-q', 'HEAD'));
    const st = await sb.git.status(repo);
    assert.equal(st.detached, true);
    assert.equal(st.currentBranch, 'HEAD');
    assert.deepEqual(st.fileStatus, []);
  });

  test('clone: depth over file:// is shallow, and pulls', async () => {
    const r = newRemote();
    const tip = r.advance('up.txt', 'up\n');
    const repo = path.join(testDir(ctx, 'clone-depth'), 'repo');
    await sb.git.clone(r.url, repo, undefined, undefined, undefined, undefined, undefined, 1);
    assert.equal(git(repo, 'rev-parse', 'HEAD'), tip);
    assert.equal(git(repo, 'log', '--oneline').split('\n').length, 1);
    assert.equal(git(repo, 'rev-parse', '--is-shallow-repository'), 'true');
    assert.ok(!gitOk(repo, 'cat-file', '-e', r.c2));
    assert.equal(git(repo, 'fsck', '--full', '--strict', '--no-progress'), '');

    const theirs = r.advance('later.txt', 'later\n');
    await sb.git.pull(repo);
    assert.equal(git(repo, 'rev-parse', 'HEAD'), theirs);
    assert.equal(git(repo, 'rev-list', '--count', 'HEAD'), '2');
    assert.equal(git(repo, 'rev-parse', '--is-shallow-repository'), 'true');
    assert.equal(git(repo, 'fsck', '--full', '--strict', '--no-progress'), '');
  });

  test('clone: missing repository', async () => {
    const d = testDir(ctx, 'clone-missing');
    await assert.rejects(
      sb.git.clone(`file://${local}/nope.git`, path.join(d, 'a')),
      expectDaemonError(DaytonaGitRepoNotFoundError, 404, 'GIT_REPO_NOT_FOUND'),
    );
  });

  test('clone: errors (missing branch, non-empty dir)', async () => {
    const r = newRemote();
    const d = testDir(ctx, 'clone-errors');
    await assert.rejects(
      sb.git.clone(r.url, path.join(d, 'b'), 'no-such-branch'),
      expectDaemonError(DaytonaGitBranchNotFoundError, 404, 'GIT_BRANCH_NOT_FOUND'),
    );
    fs.mkdirSync(path.join(d, 'full'));
    fs.writeFileSync(path.join(d, 'full', 'keep.txt'), 'mine');
    await assert.rejects(sb.git.clone(r.url, path.join(d, 'full')), expectDaemonError(DaytonaConflictError, 409, 'CONFLICT'));
    assert.deepEqual(fs.readdirSync(path.join(d, 'full')), ['keep.txt']);
  });

  test('status: clean clone, wire field names', async () => {
    const r = newRemote();
    const repo = path.join(testDir(ctx, 'status-clean'), 'repo');
    await sb.git.clone(r.url, repo);
    const st = await sb.git.status(repo);
    assert.equal(st.currentBranch, 'main');
    assert.deepEqual(st.fileStatus, []);
    assert.equal(st.ahead, 0);
    assert.equal(st.behind, 0);
    assert.equal(st.branchPublished, true);
    assert.equal(st.upstream, 'origin/main');
    assert.equal(st.detached, false);
  });

  test('status: file states', async () => {
    const r = newRemote();
    const repo = path.join(testDir(ctx, 'status-files'), 'repo');
    await sb.git.clone(r.url, repo);
    const w = (f, c) => {
      fs.mkdirSync(path.dirname(path.join(repo, f)), { recursive: true });
      fs.writeFileSync(path.join(repo, f), c);
    };
    w('untracked.txt', 'u\n');
    w('newdir/x.txt', 'x\n');
    w('staged.txt', 's\n');
    git(repo, 'add', 'staged.txt');
    w('staged_edit.txt', '1\n');
    git(repo, 'add', 'staged_edit.txt');
    w('staged_edit.txt', '2\n');
    w('a.txt', 'edited\n');
    fs.unlinkSync(path.join(repo, 'b.txt'));
    git(repo, 'rm', '-q', 'c.txt');
    git(repo, 'mv', 'd.txt', 'e.txt');
    const st = await sb.git.status(repo);
    assert.deepEqual(fileMap(st), {
      'untracked.txt': ['Untracked', 'Untracked'],
      'newdir/x.txt': ['Untracked', 'Untracked'],
      'staged.txt': ['Added', 'Unmodified'],
      'staged_edit.txt': ['Added', 'Modified'],
      'a.txt': ['Unmodified', 'Modified'],
      'b.txt': ['Unmodified', 'Deleted'],
      'c.txt': ['Deleted', 'Unmodified'],
      'e.txt': ['Renamed', 'Unmodified'],
    });
    assert.equal(st.fileStatus.find((f) => f.name === 'e.txt').extra, 'd.txt');
    for (const f of st.fileStatus) assert.equal(typeof f.extra, 'string');
  });

  test('status: ahead / behind', async () => {
    const r = newRemote();
    const repo = path.join(testDir(ctx, 'status-ahead'), 'repo');
    await sb.git.clone(r.url, repo);
    commitFile(repo, 'local.txt', 'l\n', 'local');
    let st = await sb.git.status(repo);
    assert.deepEqual([st.ahead, st.behind], [1, 0]);
    r.advance('up1.txt', '1\n');
    r.advance('up2.txt', '2\n');
    git(repo, 'fetch', '-q', 'origin');
    st = await sb.git.status(repo);
    assert.deepEqual([st.ahead, st.behind], [1, 2]);
  });

  test('status: not a repository', async () => {
    const d = testDir(ctx, 'status-norepo');
    await assert.rejects(sb.git.status(d), expectDaemonError(DaytonaGitRepoNotFoundError, 404, 'GIT_REPO_NOT_FOUND'));
    await assert.rejects(sb.git.status(path.join(d, 'missing')), (e) => e instanceof DaytonaNotFoundError);
  });

  test('add + commit: staged files, returned sha, author', async () => {
    const r = newRemote();
    const repo = path.join(testDir(ctx, 'add-commit'), 'repo');
    await sb.git.clone(r.url, repo);
    fs.writeFileSync(path.join(repo, 'new.txt'), 'new\n');
    fs.mkdirSync(path.join(repo, 'sub'));
    fs.writeFileSync(path.join(repo, 'sub', 'deep.txt'), 'deep\n');
    fs.writeFileSync(path.join(repo, 'a.txt'), 'changed\n');
    await sb.git.add(repo, ['new.txt', 'sub/deep.txt']);
    assert.deepEqual(fileMap(await sb.git.status(repo)), {
      'new.txt': ['Added', 'Unmodified'],
      'sub/deep.txt': ['Added', 'Unmodified'],
      'a.txt': ['Unmodified', 'Modified'],
    });
    const res = await sb.git.commit(repo, 'two files', AUTHOR, EMAIL);
    assert.match(res.sha, /^[0-9a-f]{40}$/);
    assert.equal(git(repo, 'rev-parse', 'HEAD'), res.sha);
    assert.equal(git(repo, 'rev-parse', 'HEAD^'), r.c2);
    assert.equal(git(repo, 'log', '-1', '--format=%an|%ae|%s'), `${AUTHOR}|${EMAIL}|two files`);
    assert.equal(git(repo, 'show', '--name-only', '--format=', 'HEAD'), 'new.txt\nsub/deep.txt');

    // "." stages everything, deletions included
    fs.unlinkSync(path.join(repo, 'b.txt'));
    await sb.git.add(repo, ['.']);
    assert.deepEqual(fileMap(await sb.git.status(repo)), {
      'a.txt': ['Modified', 'Unmodified'],
      'b.txt': ['Deleted', 'Unmodified'],
    });
    const second = await sb.git.commit(repo, 'rest', AUTHOR, EMAIL);
    assert.equal(git(repo, 'rev-parse', 'HEAD'), second.sha);
    assert.equal(git(repo, 'status', '--porcelain'), '');
  });

  test('commit: nothing staged is a bad request, allowEmpty commits anyway', async () => {
    const r = newRemote();
    const repo = path.join(testDir(ctx, 'commit-empty'), 'repo');
    await sb.git.clone(r.url, repo);
    await assert.rejects(sb.git.commit(repo, 'nothing', AUTHOR, EMAIL), expectDaemonError(DaytonaBadRequestError, 400, 'BAD_REQUEST'));
    const res = await sb.git.commit(repo, 'empty', AUTHOR, EMAIL, true);
    assert.equal(git(repo, 'rev-parse', 'HEAD'), res.sha);
    assert.equal(git(repo, 'rev-parse', 'HEAD^'), r.c2);
  });

  test('branches + createBranch / checkoutBranch / deleteBranch', async () => {
    const r = newRemote();
    const repo = path.join(testDir(ctx, 'branches'), 'repo');
    await sb.git.clone(r.url, repo);
    assert.deepEqual(await sb.git.branches(repo), { branches: ['main'], current: 'main' });

    await sb.git.createBranch(repo, 'topic');
    assert.equal(git(repo, 'symbolic-ref', 'HEAD'), 'refs/heads/topic');
    assert.deepEqual(await sb.git.branches(repo), { branches: ['main', 'topic'], current: 'topic' });
    await assert.rejects(sb.git.createBranch(repo, 'topic'), expectDaemonError(DaytonaGitBranchExistsError, 409, 'GIT_BRANCH_EXISTS'));

    await sb.git.checkoutBranch(repo, 'main');
    assert.equal(git(repo, 'symbolic-ref', 'HEAD'), 'refs/heads/main');
    await assert.rejects(
      sb.git.checkoutBranch(repo, 'no-such-branch'),
      expectDaemonError(DaytonaGitBranchNotFoundError, 404, 'GIT_BRANCH_NOT_FOUND'),
    );

    // a branch that only exists on the remote becomes a local tracking branch
    await sb.git.checkoutBranch(repo, 'feature');
    assert.equal(git(repo, 'rev-parse', 'HEAD'), r.feature);
    assert.equal(git(repo, 'rev-parse', '--abbrev-ref', 'feature@{upstream}'), 'origin/feature');
    assert.deepEqual((await sb.git.branches(repo)).branches, ['feature', 'main', 'topic']);

    await sb.git.deleteBranch(repo, 'topic');
    assert.equal(git(repo, 'branch', '--list', 'topic'), '');
    await assert.rejects(sb.git.deleteBranch(repo, 'topic'), expectDaemonError(DaytonaGitBranchNotFoundError, 404, 'GIT_BRANCH_NOT_FOUND'));
    await assert.rejects(sb.git.deleteBranch(repo, 'feature'), expectDaemonError(DaytonaConflictError, 409, 'CONFLICT'));

    await sb.git.checkoutBranch(repo, r.c1);
    assert.equal((await sb.git.branches(repo)).current, '');
  });

  test('push: current branch, then a new branch with setUpstream', async () => {
    const r = newRemote();
    const repo = path.join(testDir(ctx, 'push'), 'repo');
    await sb.git.clone(r.url, repo);
    fs.writeFileSync(path.join(repo, 'p.txt'), 'p\n');
    await sb.git.add(repo, ['p.txt']);
    const { sha } = await sb.git.commit(repo, 'to push', AUTHOR, EMAIL);
    await sb.git.push(repo);
    assert.equal(git(r.bare, 'rev-parse', 'refs/heads/main'), sha);
    let st = await sb.git.status(repo);
    assert.deepEqual([st.ahead, st.behind], [0, 0]);

    await sb.git.createBranch(repo, 'topic');
    const topic = commitFile(repo, 't.txt', 't\n', 'topic');
    await sb.git.push(repo, undefined, undefined, 'topic', 'origin', true);
    assert.equal(git(r.bare, 'rev-parse', 'refs/heads/topic'), topic);
    assert.equal(git(repo, 'config', 'branch.topic.merge'), 'refs/heads/topic');
    st = await sb.git.status(repo);
    assert.equal(st.upstream, 'origin/topic');
    assert.equal(st.branchPublished, true);
  });

  test('push: non-fast-forward is rejected', async () => {
    const r = newRemote();
    const repo = path.join(testDir(ctx, 'push-rejected'), 'repo');
    await sb.git.clone(r.url, repo);
    const theirs = r.advance('theirs.txt', 'theirs\n');
    commitFile(repo, 'mine.txt', 'mine\n', 'mine');
    await assert.rejects(sb.git.push(repo), expectDaemonError(DaytonaGitPushRejectedError, 409, 'GIT_PUSH_REJECTED'));
    assert.equal(git(r.bare, 'rev-parse', 'refs/heads/main'), theirs);
  });

  test('pull: fast-forward after another clone pushed', async () => {
    const r = newRemote();
    const d = testDir(ctx, 'pull');
    const repo = path.join(d, 'repo');
    const other = path.join(d, 'other');
    await sb.git.clone(r.url, repo);
    await sb.git.clone(r.url, other);
    fs.writeFileSync(path.join(other, 'o.txt'), 'from other\n');
    await sb.git.add(other, ['o.txt']);
    const { sha } = await sb.git.commit(other, 'from other', AUTHOR, EMAIL);
    await sb.git.push(other);

    await sb.git.pull(repo);
    assert.equal(git(repo, 'rev-parse', 'HEAD'), sha);
    assert.equal(fs.readFileSync(path.join(repo, 'o.txt'), 'utf8'), 'from other\n');
    const st = await sb.git.status(repo);
    assert.deepEqual([st.ahead, st.behind, st.fileStatus], [0, 0, []]);

    const up = r.advance('up.txt', 'up\n');
    await sb.git.pull(repo, undefined, undefined, 'main', 'origin');
    assert.equal(git(repo, 'rev-parse', 'HEAD'), up);
    await assert.rejects(
      sb.git.pull(repo, undefined, undefined, 'no-such-branch', 'origin'),
      expectDaemonError(DaytonaGitBranchNotFoundError, 404, 'GIT_BRANCH_NOT_FOUND'),
    );
  });

  test('init + remoteAdd + remotes / remoteGet', async () => {
    const d = testDir(ctx, 'init');
    const bare = path.join(d, 'server.git');
    const work = path.join(d, 'work');
    await sb.git.init(bare, true, 'main');
    assert.equal(git(bare, 'rev-parse', '--is-bare-repository'), 'true');
    await sb.git.init(work, false, 'trunk');
    assert.equal(git(work, 'symbolic-ref', 'HEAD'), 'refs/heads/trunk');
    fs.writeFileSync(path.join(work, 'hello.txt'), 'hello\n');
    await sb.git.add(work, ['.']);
    const { sha } = await sb.git.commit(work, 'root', AUTHOR, EMAIL);
    await sb.git.remoteAdd(work, 'origin', `file://${bare}`);
    assert.deepEqual((await sb.git.remotes(work)).remotes, [{ name: 'origin', url: `file://${bare}` }]);
    assert.equal(await sb.git.remoteGet(work, 'origin'), `file://${bare}`);
    assert.equal(await sb.git.remoteGet(work, 'nope'), undefined);
    await sb.git.push(work, undefined, undefined, undefined, undefined, true);
    assert.equal(git(bare, 'rev-parse', 'refs/heads/trunk'), sha);
    assert.equal((await sb.git.status(work)).upstream, 'origin/trunk');
  });

  test('reset + restore', async () => {
    const r = newRemote();
    const repo = path.join(testDir(ctx, 'reset'), 'repo');
    await sb.git.clone(r.url, repo);
    await sb.git.reset(repo, 'soft', r.c1);
    assert.equal(git(repo, 'rev-parse', 'HEAD'), r.c1);
    assert.deepEqual(fileMap(await sb.git.status(repo)), { 'a.txt': ['Modified', 'Unmodified'], 'notes.txt': ['Added', 'Unmodified'] });
    await sb.git.reset(repo, 'hard', r.c2);
    assert.equal(git(repo, 'status', '--porcelain'), '');

    fs.writeFileSync(path.join(repo, 'a.txt'), 'oops\n');
    await sb.git.restore(repo, ['a.txt']);
    assert.equal(fs.readFileSync(path.join(repo, 'a.txt'), 'utf8'), 'two\n');
    fs.writeFileSync(path.join(repo, 'b.txt'), 'staged\n');
    git(repo, 'add', 'b.txt');
    await sb.git.restore(repo, ['b.txt'], true);
    assert.deepEqual(fileMap(await sb.git.status(repo)), { 'b.txt': ['Unmodified', 'Modified'] });
  });

  test('config: local scope with path, configureUser', async () => {
    const r = newRemote();
    const repo = path.join(testDir(ctx, 'config'), 'repo');
    await sb.git.clone(r.url, repo);
    await sb.git.setConfig('toolboxd.color', 'blue', 'local', repo);
    assert.equal(git(repo, 'config', '--local', '--get', 'toolboxd.color'), 'blue');
    assert.equal(await sb.git.getConfig('toolboxd.color', 'local', repo), 'blue');
    assert.ok((await sb.git.getConfig('toolboxd.unset', 'local', repo)) == null);
    await sb.git.configureUser('Repo User', 'repo@example.com', 'local', repo);
    assert.equal(git(repo, 'config', '--local', '--get', 'user.name'), 'Repo User');
    assert.equal(git(repo, 'config', '--local', '--get', 'user.email'), 'repo@example.com');
    // the daemon's HOME is a temp dir (helpers.mjs): global scope is safe here
    await sb.git.setConfig('toolboxd.global', 'g');
    assert.equal(await sb.git.getConfig('toolboxd.global'), 'g');
    const globalEnv = { ...cliEnv, HOME: ctx.daemon.home, XDG_CONFIG_HOME: path.join(ctx.daemon.home, '.config') };
    assert.equal(
      execFileSync('git', ['config', '--global', '--get', 'toolboxd.global'], { env: globalEnv, encoding: 'utf8' }).trim(),
      'g',
    );
  });
});
