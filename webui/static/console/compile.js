// Compile jobs: while any listed job is unfinished, poll jobs.json and update its status, progress, error and log.
(() => {
  const url = document.currentScript.dataset.url;
  const PERIOD_MS = 1000;
  const FINISHED = ["succeeded", "failed", "cancelled"];
  const table = document.getElementById("compile-jobs");

  function unfinished() {
    return [...table.querySelectorAll("tr[data-id]")]
      .filter((tr) => !FINISHED.includes(tr.dataset.status)).map((tr) => tr.dataset.id);
  }

  function update(job) {
    const row = table.querySelector(`tr[data-id="${job.id}"]`);
    const detail = table.querySelector(`tr[data-for="${job.id}"]`);
    if (!row) return;
    row.dataset.status = job.status;
    const badge = row.querySelector(".status");
    badge.textContent = job.status;
    badge.className = `status ${job.status}`;
    row.querySelector(".bar span").style.width = `${job.percent}%`;
    row.querySelector(".pct").textContent = `${job.percent} %`;
    row.querySelector(".stage").textContent = job.stage;
    row.querySelector(".cache").innerHTML = job.cache_hit ? '<span class="status running">cache hit</span>'
      : job.status === "succeeded" ? "compiled" : "–";
    const error = detail.querySelector(".job-error");
    error.textContent = job.error;
    error.hidden = !job.error;
    detail.querySelector(".log").textContent = job.log;
  }

  async function poll() {
    const ids = unfinished();
    if (!ids.length) {
      document.body.dataset.jobs = "idle";
      return;
    }
    try {
      const response = await fetch(`${url}?ids=${ids.join(",")}`, { credentials: "same-origin" });
      if (response.ok) (await response.json()).jobs.forEach(update);
    } finally {
      setTimeout(poll, PERIOD_MS);
    }
  }

  poll();
})();
