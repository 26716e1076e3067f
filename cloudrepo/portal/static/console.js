// The browser console: xterm.js (vendored) joined to the VM's serial console by an authenticated
// WebSocket (the session cookie goes with it; the server checks it and the caller's right on the slice).
"use strict";
(function () {
  const box = document.getElementById("terminal");
  const state = document.getElementById("console-state");
  const term = new Terminal({ convertEol: false, cursorBlink: true, fontSize: 14, rows: 30 });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(box);
  fit.fit();
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}${box.dataset.url}`);
  ws.binaryType = "arraybuffer";
  const encoder = new TextEncoder();
  ws.onopen = () => {
    state.textContent = "connected";
    state.dataset.state = "connected";
    term.focus();
    ws.send(encoder.encode("\r"));
  };
  ws.onmessage = (e) => term.write(typeof e.data === "string" ? e.data : new Uint8Array(e.data));
  ws.onclose = (e) => {
    state.textContent = `closed${e.reason ? ": " + e.reason : ""}`;
    state.dataset.state = "closed";
  };
  term.onData((d) => ws.readyState === WebSocket.OPEN && ws.send(encoder.encode(d)));
  window.portalTerminal = term;
})();
