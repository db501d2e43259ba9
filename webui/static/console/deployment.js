// Deployment page: fetch the chosen window's series (15m, 1h, 6h) and draw one chart per metric; refresh every 10 s.
(() => {
  const box = document.getElementById("charts");
  const updated = document.getElementById("charts-updated");
  const PERIOD_MS = 10000;
  let windowName = document.querySelector("#windows button:not(.secondary)").dataset.window;

  document.getElementById("windows").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-window]");
    if (!button) return;
    windowName = button.dataset.window;
    for (const b of document.querySelectorAll("#windows button")) b.classList.toggle("secondary", b !== button);
    refresh();
  });

  async function refresh() {
    try {
      const response = await fetch(`${box.dataset.url}?window=${windowName}`, { credentials: "same-origin" });
      if (!response.ok) {
        updated.textContent = `refresh failed: HTTP ${response.status}`;
        return;
      }
      const data = await response.json();
      box.replaceChildren(...data.charts.map((c) => window.ConsoleCharts.lineChart(c, data.since, data.until)));
      const status = document.getElementById("dep-status");
      status.textContent = data.status;
      status.className = `status ${data.status}`;
      const zero = document.getElementById("scale-to-zero");  // none for a failed or stopped deployment
      if (zero) {
        zero.hidden = !data.scale_to_zero;
        if (data.scale_to_zero) zero.querySelector("span").textContent = data.scale_to_zero.text;
      }
      const message = document.getElementById("status-message");
      if (message) message.textContent = data.status_message;
      updated.textContent = `· updated ${new Date().toLocaleTimeString()}`;
      document.body.dataset.charts = "ok";
      document.body.dataset.window = data.window;
    } catch (err) {
      updated.textContent = `refresh failed: ${err}`;
    }
  }

  refresh();
  setInterval(refresh, PERIOD_MS);
})();
