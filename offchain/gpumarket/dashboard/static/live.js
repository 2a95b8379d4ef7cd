// Live updates for the dashboard's pages, with no reload and nothing fetched but this server.
//
// Every page carries the version of the market it shows (<body data-version>). Every few seconds
// (data-live-ms) this asks /api/version; when the version moved on (a block was indexed, an
// oracle went up or down), it fetches the same page again and swaps its <main> for the new one,
// so the scroll position, the address bar and any open form stay as they were. While the server
// does not answer, the "live" badge in the header says so.
(function () {
  "use strict";

  const body = document.body;
  const interval = Number(body.dataset.liveMs) || 2000;
  const badge = document.getElementById("live");
  let version = body.dataset.version;
  let busy = false;

  function showLive(ok) {
    if (!badge) return;
    badge.textContent = ok ? "live" : "offline";
    badge.classList.toggle("offline", !ok);
  }

  async function refresh() {
    const answer = await fetch(window.location.href, { cache: "no-store", headers: { Accept: "text/html" } });
    if (!answer.ok) return; // keep what is shown; the next version asks again
    const page = new DOMParser().parseFromString(await answer.text(), "text/html");
    const fresh = page.querySelector("main");
    const current = document.querySelector("main");
    if (fresh && current) current.replaceWith(fresh);
    version = page.body.dataset.version || version;
    body.dataset.version = version;
  }

  async function check() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const answer = await fetch("/api/version", { cache: "no-store" });
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      const latest = (await answer.json()).version;
      if (latest !== version) await refresh();
      showLive(true);
    } catch (error) {
      showLive(false);
    } finally {
      busy = false;
    }
  }

  window.setInterval(check, interval);
  document.addEventListener("visibilitychange", check);
})();
