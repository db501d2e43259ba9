// Small inline-SVG line charts: ConsoleCharts.lineChart({title, unit, max, series: [{label, points: [[t_ms, v]]}]},
// since_ms, until_ms) -> <figure>. One line per series; a null value breaks the line. No dependencies.
(() => {
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#2f5bd3", "#1f8a4c", "#b7791f", "#c53030", "#6b46c1", "#0f7c8c"];
  const W = 420, H = 170, LEFT = 46, RIGHT = 10, TOP = 10, BOTTOM = 24;

  function svg(tag, attrs = {}, text = null) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== null) node.textContent = text;
    return node;
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= value) return m * power;
    return 10 * power;
  }

  function fmt(v) {
    if (v === null || v === undefined) return "–";
    const a = Math.abs(v);
    return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
  }

  function clock(ms) {
    const d = new Date(ms);
    return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
  }

  function lineChart(chart, since, until) {
    const figure = document.createElement("figure");
    figure.className = "chart";
    figure.dataset.key = chart.key;
    const values = chart.series.flatMap((s) => s.points.map((p) => p[1]).filter((v) => v !== null));
    const latest = chart.series.map((s) => [...s.points].reverse().find((p) => p[1] !== null)).filter(Boolean);
    const caption = document.createElement("figcaption");
    const now = latest.length ? latest.map((p) => fmt(p[1])).join(" / ") : "–";
    caption.innerHTML = `<strong></strong> <span class="now"></span>`;
    caption.querySelector("strong").textContent = chart.title;
    caption.querySelector(".now").textContent = `${now} ${chart.unit}`;
    figure.append(caption);

    const top = chart.max || niceMax(Math.max(0, ...values) * 1.1);
    const x = (t) => LEFT + ((t - since) / Math.max(until - since, 1)) * (W - LEFT - RIGHT);
    const y = (v) => TOP + (1 - Math.min(v, top) / top) * (H - TOP - BOTTOM);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": chart.title });
    for (const frac of [0, 0.5, 1]) {
      const v = top * frac;
      root.append(svg("line", { x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v), class: "grid" }));
      root.append(svg("text", { x: LEFT - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" }, fmt(v)));
    }
    for (let i = 0; i <= 4; i += 1) {
      const t = since + ((until - since) * i) / 4;
      root.append(svg("text", { x: x(t), y: H - 6, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle",
        class: "tick" }, clock(t)));
    }
    chart.series.forEach((s, i) => {
      const color = COLORS[i % COLORS.length];
      let run = [];
      const flush = () => {
        if (run.length > 1) {
          root.append(svg("polyline", { points: run.join(" "), fill: "none", stroke: color, "stroke-width": 1.6,
            "stroke-linejoin": "round", class: "series" }));
        } else if (run.length === 1) {
          const [cx, cy] = run[0].split(",");
          root.append(svg("circle", { cx, cy, r: 2.5, fill: color, class: "series" }));
        }
        run = [];
      };
      for (const [t, v] of s.points) {
        if (v === null) flush();
        else run.push(`${x(t).toFixed(1)},${y(v).toFixed(1)}`);
      }
      flush();
    });
    if (!values.length) {
      root.append(svg("text", { x: (LEFT + W) / 2, y: H / 2, "text-anchor": "middle", class: "nodata" },
        "no samples yet"));
    }
    figure.append(root);
    if (chart.series.length > 1) {
      const legend = document.createElement("div");
      legend.className = "legend";
      chart.series.forEach((s, i) => {
        const item = document.createElement("span");
        item.style.setProperty("--c", COLORS[i % COLORS.length]);
        item.textContent = s.label;
        legend.append(item);
      });
      figure.append(legend);
    }
    return figure;
  }

  window.ConsoleCharts = { lineChart };
})();
