// The slice page's engine runs: start a preview or a deploy through the API (the session's CSRF token in
// its header), then show the engine's lines as the server streams them (server-sent events).
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const events = document.getElementById("events");
  const result = document.getElementById("result");

  function enable(on) {
    document.querySelectorAll("#preview, #deploy").forEach((b) => (b.disabled = !on));
  }

  // Follow a job's stream from its first line (the page may show some of them already).
  function follow(url, verb) {
    events.textContent = "";
    const source = new EventSource(url);
    source.onmessage = (e) => {
      events.textContent += e.data + "\n";
      events.scrollTop = events.scrollHeight;
    };
    source.addEventListener("end", (e) => {
      source.close();
      result.textContent = `${verb} ${e.data === "ok" ? "succeeded" : "failed"}`;
      result.dataset.result = e.data;
      enable(true);
      if (verb === "deploy" && e.data === "ok") setTimeout(() => location.reload(), 800);
    });
  }

  function run(button, verb) {
    const slice = button.dataset.slice;
    enable(false);
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
          enable(true);
          return;
        }
        follow(body.events, verb);
      });
  }
  if (events.dataset.job && events.dataset.done === "false") {
    enable(false); // a run still going (started before this page was loaded, here or by another server)
    follow(`/api/jobs/${events.dataset.job}/events`, events.dataset.verb);
  }
  document.getElementById("preview").addEventListener("click", (e) => run(e.target, "preview"));
  document.getElementById("deploy").addEventListener("click", (e) => run(e.target, "deploy"));
})();
