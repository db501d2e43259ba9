// Hosting advisor: draw the spider chart of the server's scores (the json_script "advisor-data").
(() => {
  const data = JSON.parse(document.getElementById("advisor-data").textContent);
  const box = document.getElementById("radar");
  if (!data || !box) return;
  const chart = {
    title: "Fitness per hosting option",
    max: 10,
    axes: data.fitness.map((key) => ({ key, title: data.fitness_titles[key] })),
    series: data.options.map((o) => ({ key: o.option, label: o.title, values: o.scores,
      highlight: o.option === data.recommended })),
  };
  box.replaceChildren(window.ConsoleCharts.radarChart(chart));
  window.advisorChart = chart;
  document.body.dataset.radar = "ok";
})();
