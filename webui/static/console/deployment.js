// Deployment page: fetch the last hour's series and draw one chart per metric; refresh every 10 s.
(() => {
  const box = document.getElementById("charts");
  const updated = document.getElementById("charts-updated");
  const PERIOD_MS = 10000;

  async function refresh() {
    try {
      const response = await fetch(box.dataset.url, { credentials: "same-origin" });
      if (!response.ok) {
        updated.textContent = `refresh failed: HTTP ${response.status}`;
        return;
      }
      const data = await response.json();
      box.replaceChildren(...data.charts.map((c) => window.ConsoleCharts.lineChart(c, data.since, data.until)));
      const status = document.getElementById("dep-status");
      status.textContent = data.status;
      status.className = `status ${data.status}`;
      const zero = document.querySelector("#scale-to-zero span");
      if (zero && data.scale_to_zero) zero.textContent = data.scale_to_zero.text;
      updated.textContent = `· updated ${new Date().toLocaleTimeString()}`;
      document.body.dataset.charts = "ok";
    } catch (err) {
      updated.textContent = `refresh failed: ${err}`;
    }
  }

  refresh();
  setInterval(refresh, PERIOD_MS);
})();
