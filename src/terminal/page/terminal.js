// The web terminal: one xterm.js bound to one WebSocket (`ws`, relative to this page), one
// login shell per connection. Keystrokes and pastes go out as binary frames, so no typed text
// is ever taken for a control message; the size goes out as a text frame {"rows":R,"cols":C}
// on connect and on every resize. Output arrives as binary frames (xterm decodes UTF-8 across
// frames). When the socket drops, the page says so and connects to a new shell; keystrokes typed
// meanwhile are dropped. <body data-connected> tells whether a shell is attached.
(() => {
  'use strict';
  const container = document.getElementById('terminal');
  const term = new Terminal({
    allowProposedApi: true, // the Unicode 11 width tables
    cursorBlink: true,
    scrollback: 10000,
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
    theme: { background: '#000000' },
  });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.loadAddon(new WebLinksAddon.WebLinksAddon());
  term.loadAddon(new Unicode11Addon.Unicode11Addon());
  term.unicode.activeVersion = '11';
  term.open(container);
  fit.fit();
  // For tests and debugging from the console.
  window.toolboxdTerminal = term;

  const encoder = new TextEncoder();
  let socket = null;
  let failures = 0;

  function url() {
    const target = new URL('ws', location.href);
    target.protocol = target.protocol === 'https:' ? 'wss:' : 'ws:';
    target.search = `?cols=${term.cols}&rows=${term.rows}`;
    target.hash = '';
    return target.href;
  }

  function note(text) {
    term.write(`\r\n\x1b[33m[${text}]\x1b[0m\r\n`);
  }

  function sendSize() {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ rows: term.rows, cols: term.cols }));
    }
  }

  function connect() {
    const ws = new WebSocket(url());
    ws.binaryType = 'arraybuffer';
    socket = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      document.body.dataset.connected = 'true';
      failures = 0;
      sendSize();
      term.focus();
    };
    ws.onmessage = (event) => {
      term.write(typeof event.data === 'string' ? event.data : new Uint8Array(event.data));
    };
    ws.onclose = (event) => {
      if (socket !== ws) return;
      socket = null;
      document.body.dataset.connected = 'false';
      let why = opened ? 'connection lost' : 'cannot connect';
      try {
        const reason = JSON.parse(event.reason);
        if (typeof reason.exitCode === 'number') why = `shell exited with code ${reason.exitCode}`;
      } catch {
        // Not an exit report.
      }
      failures += opened ? 0 : 1;
      const delay = Math.min(10000, failures ? 500 * 2 ** failures : 300);
      note(`${why}; starting a new shell${delay >= 1000 ? ` in ${Math.round(delay / 1000)} s` : ''}…`);
      setTimeout(connect, delay);
    };
  }

  term.onData((data) => {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(data));
  });
  term.onBinary((data) => {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff));
    }
  });
  term.onResize(sendSize);
  new ResizeObserver(() => fit.fit()).observe(container);
  connect();
})();
