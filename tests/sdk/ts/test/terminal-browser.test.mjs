// The web terminal in a real browser: headless Chromium (Debian's `chromium`) driven by
// playwright-core opens the page, types, resizes the window, pastes, and reads what xterm.js
// rendered (its DOM renderer's rows). A screenshot of each run is saved under target/.
//
// Needs /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it); skipped without it.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';

import { chromium } from 'playwright-core';

import { binaryExists, startDaemon } from './helpers.mjs';

const CHROMIUM = process.env.TOOLBOXD_CHROMIUM || '/usr/bin/chromium';
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');
const ARTIFACTS = path.join(process.env.CARGO_TARGET_DIR || path.join(REPO, 'target'), 'browser');

const skip = !binaryExists()
  ? 'toolboxd binary not built'
  : !fs.existsSync(CHROMIUM) && `${CHROMIUM} not found (apt-get install chromium)`;

/** What xterm.js shows on screen now. */
function screenText(page) {
  return page.evaluate(() => document.querySelector('.xterm-rows')?.innerText ?? '');
}

async function waitForScreen(page, needle, ms = 30_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const text = await screenText(page);
    if (text.includes(needle)) return text;
    if (Date.now() > deadline) throw new Error(`no ${JSON.stringify(needle)} on screen:\n${text}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function size(page) {
  return page.evaluate(() => ({ rows: window.toolboxdTerminal.rows, cols: window.toolboxdTerminal.cols }));
}

async function typeLine(page, text) {
  await page.keyboard.type(text);
  await page.keyboard.press('Enter');
}

/** Pastes `text` the way a browser does (a `paste` event carrying the clipboard). */
async function paste(page, text) {
  await page.evaluate((data) => {
    const target = document.querySelector('.xterm-helper-textarea');
    const clipboardData = new DataTransfer();
    clipboardData.setData('text/plain', data);
    target.dispatchEvent(new ClipboardEvent('paste', { clipboardData, bubbles: true, cancelable: true }));
  }, text);
}

/** Everything the browser test checks, at `url` (the page's address); saves `name`.png. */
async function exercise(browser, url, name) {
  const page = await browser.newPage({ viewport: { width: 1000, height: 600 } });
  const errors = [];
  page.on('pageerror', (err) => errors.push(String(err)));
  page.on('requestfailed', (request) => errors.push(`${request.url()}: ${request.failure()?.errorText}`));
  try {
    await page.goto(url);
    await page.waitForFunction(() => document.body.dataset.connected === 'true');
    await page.locator('.xterm-helper-textarea').focus();
    await typeLine(page, 'echo hello-$((6*7))');
    await waitForScreen(page, 'hello-42');

    // UTF-8 split across two reads (and two frames) renders as one character.
    await typeLine(page, "printf 'caf\\303'; sleep 0.3; printf '\\251-ok\\n'");
    await waitForScreen(page, 'café-ok');

    // A smaller window: the fit addon resizes the terminal, the page sends {rows, cols}, and
    // the shell's terminal follows.
    const before = await size(page);
    await page.setViewportSize({ width: 640, height: 360 });
    await page.waitForFunction((old) => window.toolboxdTerminal.cols !== old.cols, before);
    const now = await size(page);
    assert.ok(now.cols < before.cols && now.rows < before.rows, JSON.stringify({ before, now }));
    await typeLine(page, 'clear; stty size');
    await waitForScreen(page, `${now.rows} ${now.cols}`);

    // A pasted JSON line, even one shaped like a resize, is typed.
    await page.keyboard.type("printf '<%s>\\n' '");
    await paste(page, '{"rows":5,"cols":7}');
    await typeLine(page, "'");
    await waitForScreen(page, '<{"rows":5,"cols":7}>');
    assert.deepEqual(await size(page), now);
    await typeLine(page, "stty size | tr ' ' x");
    await waitForScreen(page, `${now.rows}x${now.cols}`);

    // The shell ends: the page says so and connects to a new one.
    await typeLine(page, 'exit');
    await waitForScreen(page, 'shell exited with code 0; starting a new shell');
    await page.waitForFunction(() => {
      // Connected, and the new shell's prompt is out (typing ahead of it works, but looks odd).
      const text = document.querySelector('.xterm-rows').innerText;
      const notice = text.lastIndexOf('starting a new shell');
      return document.body.dataset.connected === 'true' && /[#$]\s*$/.test(text.slice(notice));
    });
    await typeLine(page, 'echo again-$((1+1))');
    await waitForScreen(page, 'again-2');

    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, `terminal-${name}.png`) });
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
}

describe('web terminal in headless Chromium', { skip }, () => {
  let daemon;
  let browser;

  before(async () => {
    daemon = await startDaemon('ts-browser');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
  });
  after(async () => {
    await browser?.close();
    await daemon?.stop();
  });

  test('at / on the terminal listener', async () => {
    await exercise(browser, `${daemon.terminalUrl}/`, 'root');
  });

  // HOOK (issue 13, part 4): the same steps through the preview proxy, at
  // /proxy/{terminal port}/ on the toolbox listener. Runs once that route exists (anything but a
  // 404 from it); until then it is skipped with this note.
  test('under /proxy/{port}/ on the toolbox listener (preview proxy)', async (t) => {
    const port = new URL(daemon.terminalUrl).port;
    const url = `${daemon.toolboxUrl}/proxy/${port}/`;
    const probe = await fetch(url);
    if (probe.status === 404) {
      t.skip('no preview proxy in this build (GET /proxy/{port}/ is a 404)');
      return;
    }
    assert.equal(probe.status, 200);
    await exercise(browser, url, 'proxy');
  });
});

describe('web terminal in headless Chromium with a token (--token)', { skip }, () => {
  const TOKEN = 'browser-token-1234';
  let daemon;
  let browser;

  before(async () => {
    daemon = await startDaemon('ts-browser-token', ['--token', TOKEN]);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
  });
  after(async () => {
    await browser?.close();
    await daemon?.stop();
  });

  test('without the token the page is a 401', async () => {
    const r = await fetch(`${daemon.terminalUrl}/`);
    assert.equal(r.status, 401);
    assert.equal((await r.json()).code, 'UNAUTHORIZED');
  });

  test('?token= once: the cookie carries the page, its files and its socket', async () => {
    await exercise(browser, `${daemon.terminalUrl}/?token=${TOKEN}`, 'token');
  });
});
