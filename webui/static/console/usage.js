// Usage page: draw tokens and requests over the window, one line per tenant, from the server's buckets.
(() => {
  const data = JSON.parse(document.getElementById("usage-series").textContent);
  const box = document.getElementById("usage-charts");
  box.replaceChildren(...data.charts.map((c) => window.ConsoleCharts.lineChart(c, data.since, data.until)));
  document.body.dataset.usageCharts = "ok";
})();
