// Dashboard: poll live.json and redraw the deployments table and tiles. No framework, no build step.
(() => {
  const script = document.currentScript;
  const url = script.dataset.url;
  const PERIOD_MS = 5000;
  const ms = (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(1));

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    return node;
  }

  function bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
  }

  function occupancy(d) {
    const cell = el("td", { class: "occupancy" });
    if (d.utilization_pct === null || d.utilization_pct === undefined) {
      cell.append("–");
      return cell;
    }
    cell.append(`${Math.round(d.utilization_pct)} % · ${bytes(d.memory_bytes)}`);
    const series = d.utilization_per_minute.map((v) => (v === null ? 0 : v));
    cell.append(sparkline(series, 90, 18, 100, "#1f8a4c", "% utilization"));
    return cell;
  }

  function sparkline(values, width = 120, height = 24, ceiling = null, color = "#2f5bd3", unit = "req/min") {
    const svgNS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const max = ceiling || Math.max(1, ...values);
    const step = values.length > 1 ? width / (values.length - 1) : width;
    const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
    const line = document.createElementNS(svgNS, "polyline");
    line.setAttribute("points", points.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", color);
    line.setAttribute("stroke-width", "1.5");
    svg.append(line);
    const title = document.createElementNS(svgNS, "title");
    title.textContent = `peak ${Math.max(0, ...values)} ${unit}`;
    svg.append(title);
    return svg;
  }

  const KINDS = [["rate_limited", "rate-limited"], ["content_filtered", "filtered"], ["rejected", "rejected"],
    ["failed", "failed"]];

  function errorsCell(d) {
    const cell = el("td", { class: "num errors" }, d.errors);
    const kinds = d.errors_by_kind || {};
    const parts = KINDS.filter(([k]) => kinds[k]).map(([k, label]) => `${kinds[k]} ${label}`);
    if (parts.length) cell.append(el("small", { class: "muted kinds" }, ` (${parts.join(", ")})`));
    cell.title = KINDS.map(([k, label]) => `${label}: ${kinds[k] || 0}`).join(" · ");
    return cell;
  }

  function row(d) {
    const tokens = d.prompt_tokens + d.completion_tokens;
    const tr = el("tr", { "data-name": d.name },
      el("td", {}, el("a", { href: `/deployments/${d.name}/` }, el("strong", {}, d.name))),
      el("td", {}, `${d.model}:v${d.version}`),
      el("td", {}, `${d.device} · ${d.mode}`),
      el("td", { title: d.status_message || "" }, el("span", { class: `status ${d.status}` }, d.status)),
      el("td", {}, `${d.replicas.ready}/${d.replicas.desired}`),
      el("td", { class: "num" }, d.requests),
      errorsCell(d),
      el("td", { class: "num" }, tokens),
      el("td", { class: "num" }, ms(d.p50_latency_ms)),
      el("td", { class: "num" }, ms(d.p50_ttft_ms)),
      occupancy(d),
      el("td", { class: "num" }, d.last_cold_start_s === null ? "–" : `${d.last_cold_start_s.toFixed(1)} s`),
      el("td", { class: "spark" }, sparkline(d.requests_per_minute)),
    );
    return tr;
  }

  function render(data) {
    const body = document.querySelector("#deployments tbody");
    if (data.deployments.length) {
      body.replaceChildren(...data.deployments.map(row));
    } else if (!body.querySelector("tr.empty")) {
      body.replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: 13 }, "No deployments.")));
    }
    document.getElementById("t-running").textContent = data.totals.deployments_running;
    document.getElementById("t-deployments").textContent = data.totals.deployments;
    document.getElementById("t-requests").textContent = data.totals.requests;
    document.getElementById("t-tokens").textContent = data.totals.tokens;
    document.getElementById("t-p50").textContent = ms(data.totals.p50_latency_ms);
    document.getElementById("updated").textContent = `updated ${new Date(data.generated_at).toLocaleTimeString()}`;
    document.body.dataset.live = "ok";
  }

  async function poll() {
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.ok) render(await response.json());
      else document.getElementById("updated").textContent = `refresh failed: HTTP ${response.status}`;
    } catch (err) {
      document.getElementById("updated").textContent = `refresh failed: ${err}`;
    }
  }

  poll();
  setInterval(poll, PERIOD_MS);
})();
