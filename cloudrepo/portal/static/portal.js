// The slice page's engine runs: start a preview or a deploy through the API (the session's CSRF token in
// its header), then show the engine's lines as the server streams them (server-sent events).
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const events = document.getElementById("events");
  const result = document.getElementById("result");

  function run(button, verb) {
    const slice = button.dataset.slice;
    document.querySelectorAll("#preview, #deploy").forEach((b) => (b.disabled = true));
    events.textContent = "";
    result.textContent = verb === "deploy" ? "deploying…" : "previewing…";
    fetch(`/api/slices/${encodeURIComponent(slice)}/${verb}`, {
      method: "POST",
      headers: { "X-CSRF-Token": csrf },
      credentials: "same-origin",
    })
      .then((r) => r.json().then((body) => ({ ok: r.ok, body })))
      .then(({ ok, body }) => {
        if (!ok) {
          result.textContent = "refused: " + [].concat(body.detail).map((d) => d.msg || d).join("; ");
          document.querySelectorAll("#preview, #deploy").forEach((b) => (b.disabled = false));
          return;
        }
        const source = new EventSource(body.events);
        source.onmessage = (e) => {
          events.textContent += e.data + "\n";
          events.scrollTop = events.scrollHeight;
        };
        source.addEventListener("end", (e) => {
          source.close();
          result.textContent = `${verb} ${e.data === "ok" ? "succeeded" : "failed"}`;
          result.dataset.result = e.data;
          document.querySelectorAll("#preview, #deploy").forEach((b) => (b.disabled = false));
          if (verb === "deploy" && e.data === "ok") setTimeout(() => location.reload(), 800);
        });
      });
  }
  document.getElementById("preview").addEventListener("click", (e) => run(e.target, "preview"));
  document.getElementById("deploy").addEventListener("click", (e) => run(e.target, "deploy"));
})();
