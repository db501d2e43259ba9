// A benchmark run's plots, drawn from the run's results the server embedded (the json_script "bench-data": {runs:
// [{id, label, slo: {ttft_s, itl_s}, levels: [...]}, ...]}; a second run is the ?compare= overlay).
// Each chart is an inline-SVG <figure class="chart" data-key=...> whose figure.chartData (and window.benchCharts)
// holds exactly the points drawn; every point is a <circle class="point" data-run=... data-level=...>.
(() => {
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#2f5bd3", "#c53030", "#1f8a4c", "#b7791f", "#6b46c1", "#0f7c8c"];
  const DASH = { p50: "", p90: "5 3", p99: "1.5 2.5" };
  const W = 440, H = 220, LEFT = 52, RIGHT = 12, TOP = 12, BOTTOM = 36;

  const el = (tag, attrs = {}, text = null) => {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== null) node.textContent = text;
    return node;
  };
  const niceMax = (v) => {
    if (!(v > 0)) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  };
  const fmt = (v) => {
    const a = Math.abs(v);
    return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 0.1 ? v.toFixed(2) : v.toFixed(3);
  };
  const levelName = (l) => (l.concurrency !== undefined && l.concurrency !== null ? `c=${l.concurrency}`
    : `${l.rate}/s`);

  // xyChart({key, title, xLabel, yLabel, categories?, series: [{label, run, color, dash, points: [{x, y, level}]}],
  //          vlines: [{x, label}]}) -> <figure>. With `categories`, x is an index into them (one tick per level).
  function xyChart(chart) {
    const figure = document.createElement("figure");
    figure.className = "chart";
    figure.dataset.key = chart.key;
    figure.chartData = chart;
    const caption = document.createElement("figcaption");
    caption.innerHTML = "<strong></strong>";
    caption.querySelector("strong").textContent = chart.title;
    figure.append(caption);
    const pts = chart.series.flatMap((s) => s.points).filter((p) => p.y !== null && p.y !== undefined);
    const cats = chart.categories;
    const xs = pts.map((p) => p.x).concat((chart.vlines || []).map((v) => v.x));
    const xMax = cats ? cats.length - 1 : niceMax(Math.max(0, ...xs) * 1.1);
    const yMax = niceMax(Math.max(0, ...pts.map((p) => p.y)) * 1.1);
    const x = (v) => LEFT + (cats ? (cats.length > 1 ? v / xMax : 0.5) : v / xMax) * (W - LEFT - RIGHT);
    const y = (v) => TOP + (1 - v / yMax) * (H - TOP - BOTTOM);
    const root = el("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": chart.title });
    for (const f of [0, 0.5, 1]) {
      root.append(el("line", { x1: LEFT, x2: W - RIGHT, y1: y(yMax * f), y2: y(yMax * f), class: "grid" }));
      root.append(el("text", { x: LEFT - 6, y: y(yMax * f) + 4, "text-anchor": "end", class: "tick" }, fmt(yMax * f)));
    }
    const ticks = cats ? cats.map((c, i) => [i, c]) : [0, 0.25, 0.5, 0.75, 1].map((f) => [xMax * f, fmt(xMax * f)]);
    for (const [v, text] of ticks) {
      root.append(el("text", { x: x(v), y: H - 20, "text-anchor": "middle", class: "tick" }, text));
    }
    root.append(el("text", { x: (LEFT + W - RIGHT) / 2, y: H - 4, "text-anchor": "middle", class: "tick" },
      chart.xLabel));
    root.append(el("text", { x: 10, y: TOP + (H - TOP - BOTTOM) / 2, "text-anchor": "middle", class: "tick",
      transform: `rotate(-90 10 ${TOP + (H - TOP - BOTTOM) / 2})` }, chart.yLabel));
    for (const v of chart.vlines || []) {
      root.append(el("line", { x1: x(v.x), x2: x(v.x), y1: TOP, y2: H - BOTTOM, stroke: "#c53030",
        "stroke-dasharray": "4 3", class: "slo", "data-x": v.x }));
      root.append(el("text", { x: x(v.x) + 4, y: TOP + 10, class: "tick slo-label" }, v.label));
    }
    for (const s of chart.series) {
      const drawn = s.points.filter((p) => p.y !== null && p.y !== undefined);
      if (drawn.length > 1) {
        root.append(el("polyline", { points: drawn.map((p) => `${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join(" "),
          fill: "none", stroke: s.color, "stroke-width": 1.6, "stroke-dasharray": s.dash || "", class: "series",
          "data-label": s.label, "data-run": s.run }));
      }
      for (const p of drawn) {
        const dot = el("circle", { cx: x(p.x).toFixed(1), cy: y(p.y).toFixed(1), r: 3, fill: s.color,
          class: "point", "data-run": s.run, "data-series": s.label, "data-level": p.level });
        dot.append(el("title", {}, `${s.label} ${p.level}: ${fmt(p.y)}`));
        root.append(dot);
      }
    }
    if (!pts.length) {
      root.append(el("text", { x: (LEFT + W) / 2, y: H / 2, "text-anchor": "middle", class: "nodata" }, "no data"));
    }
    figure.append(root);
    const legend = document.createElement("div");
    legend.className = "legend";
    for (const s of chart.series) {
      const item = document.createElement("span");
      item.style.setProperty("--c", s.color);
      item.textContent = s.label;
      legend.append(item);
    }
    figure.append(legend);
    return figure;
  }

  const data = JSON.parse(document.getElementById("bench-data").textContent);
  const box = document.getElementById("bench-charts");
  if (!data || !box) return;
  const runs = data.runs;
  const many = runs.length > 1;
  const name = (r, what) => (many ? `#${r.id} ${what}` : what);
  // Levels on one categorical axis: the union of the runs' level names, in the first run's order.
  const cats = [...new Set(runs.flatMap((r) => r.levels.map(levelName)))];

  const charts = [];
  for (const [metric, title] of [["ttft", "TTFT"], ["itl", "ITL"]]) {
    charts.push({
      key: `throughput-${metric}`, title: `Output tok/s against ${title} p50 (one point per level)`,
      xLabel: `${title} p50 (s)`, yLabel: "output tok/s",
      series: runs.map((r, i) => ({ label: r.label, run: r.id, color: COLORS[i % COLORS.length],
        points: r.levels.map((l) => ({ x: l[`${metric}_p50`], y: l.output_tok_s, level: levelName(l) })) })),
      vlines: runs.map((r) => r.slo && r.slo[`${metric}_s`]).filter((v, i, a) => v && a.indexOf(v) === i)
        .map((v) => ({ x: v, label: `SLO ${v} s` })),
    });
  }
  for (const [metric, title] of [["ttft", "TTFT"], ["itl", "ITL"], ["e2e", "End-to-end latency"]]) {
    charts.push({
      key: `latency-${metric}`, title: `${title} p50 / p90 / p99 per level`, xLabel: "level", yLabel: "seconds",
      categories: cats,
      series: runs.flatMap((r, i) => ["p50", "p90", "p99"].map((q) => ({
        label: name(r, q), run: r.id, quantile: q, color: COLORS[i % COLORS.length], dash: DASH[q],
        points: r.levels.map((l) => ({ x: cats.indexOf(levelName(l)), y: l[`${metric}_${q}`], level: levelName(l) })),
      }))),
      vlines: [],
    });
  }
  charts.push({
    key: "cost", title: "Cost per million output tokens per level ($)", xLabel: "level", yLabel: "$ / M output tok",
    categories: cats,
    series: runs.map((r, i) => ({ label: r.label, run: r.id, color: COLORS[i % COLORS.length],
      points: r.levels.map((l) => ({ x: cats.indexOf(levelName(l)), y: l.cost_per_million_output_tokens,
        level: levelName(l) })) })),
    vlines: [],
  });
  box.replaceChildren(...charts.map(xyChart));
  window.benchCharts = charts;
  window.benchData = data;
  document.body.dataset.benchCharts = "ok";
})();
