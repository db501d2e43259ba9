// Playground: build an OpenAI request from the form, send it to the real /v1 API with the page's key, stream the
// answer (SSE) into the page, and show its TTFT, inter-token latency, tokens and tok/s; show the same request as
// curl and openai-python code (with a placeholder, never the page's key).
(() => {
  const form = document.getElementById("playground-form");
  const key = form.dataset.key;
  const api = form.dataset.api;
  const answer = document.getElementById("pg-answer");
  const errorBox = document.getElementById("pg-error");
  const state = document.getElementById("pg-state");
  const stopButton = document.getElementById("pg-stop-btn");
  let controller = null;

  const value = (name) => form.elements[name].value.trim();
  const endpoint = () => form.querySelector("input[name=endpoint]:checked").value;

  function body() {
    const b = { model: value("model"), max_tokens: Number(value("max_tokens")) || 16 };
    if (endpoint() === "chat") {
      b.messages = [];
      if (value("system")) b.messages.push({ role: "system", content: value("system") });
      b.messages.push({ role: "user", content: form.elements.prompt.value });
    } else {
      b.prompt = form.elements.prompt.value;
    }
    if (value("temperature") !== "") b.temperature = Number(value("temperature"));
    if (value("top_p") !== "") b.top_p = Number(value("top_p"));
    const stop = form.elements.stop.value.split(/\n|,/).map((s) => s.trim()).filter(Boolean);
    if (stop.length) b.stop = stop;
    if (value("seed") !== "") b.seed = Number(value("seed"));
    if (form.elements.stream.checked) {
      b.stream = true;
      b.stream_options = { include_usage: true };
    }
    return b;
  }

  const path = () => (endpoint() === "chat" ? "/chat/completions" : "/completions");

  function pyValue(v) {
    if (v === true) return "True";
    if (v === false) return "False";
    if (v === null) return "None";
    if (Array.isArray(v)) return `[${v.map(pyValue).join(", ")}]`;
    if (typeof v === "object") return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${pyValue(x)}`).join(", ")}}`;
    return JSON.stringify(v);
  }

  function showCode() {
    const b = body();
    const json = JSON.stringify(b, null, 2).replace(/'/g, "'\\''");
    document.getElementById("pg-curl").textContent =
      `curl ${b.stream ? "-N " : ""}${api}${path()} \\\n  -H "Authorization: Bearer $APPLIANCE_API_KEY" \\\n` +
      `  -H "Content-Type: application/json" \\\n  -d '${json}'`;
    const call = endpoint() === "chat" ? "client.chat.completions.create" : "client.completions.create";
    const args = Object.entries(b).map(([k, v]) => `    ${k}=${pyValue(v)},`).join("\n");
    const read = b.stream
      ? (endpoint() === "chat"
        ? "for chunk in response:\n    if chunk.choices and chunk.choices[0].delta.content:\n        print(chunk.choices[0].delta.content, end=\"\", flush=True)"
        : "for chunk in response:\n    if chunk.choices:\n        print(chunk.choices[0].text, end=\"\", flush=True)")
      : (endpoint() === "chat" ? "print(response.choices[0].message.content)" : "print(response.choices[0].text)");
    document.getElementById("pg-python").textContent =
      `import os\n\nfrom openai import OpenAI\n\nclient = OpenAI(base_url="${api}", api_key=os.environ["APPLIANCE_API_KEY"])\n` +
      `response = ${call}(\n${args}\n)\n${read}`;
  }

  function quantile(sorted, q) {
    if (!sorted.length) return null;
    const pos = (sorted.length - 1) * q, lo = Math.floor(pos), hi = Math.min(lo + 1, sorted.length - 1);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
  }

  const ms = (v) => (v === null || v === undefined ? "–" : `${v.toFixed(1)} ms`);

  function setStat(name, text) {
    document.querySelector(`#pg-stats [data-stat=${name}]`).textContent = text;
  }

  function report(run) {
    const gaps = run.times.slice(1).map((t, i) => t - run.times[i]);
    const sorted = [...gaps].sort((a, b) => a - b);
    const first = run.times.length ? run.times[0] - run.start : null;
    const last = run.times.length ? run.times[run.times.length - 1] : null;
    const tokens = run.usage ? run.usage.completion_tokens : run.times.length;
    const stats = {
      ttft_ms: first, itl_mean_ms: gaps.length ? gaps.reduce((a, b) => a + b, 0) / gaps.length : null,
      itl_p50_ms: quantile(sorted, 0.5), itl_p95_ms: quantile(sorted, 0.95),
      prompt_tokens: run.usage ? run.usage.prompt_tokens : null, completion_tokens: tokens,
      tok_s: tokens > 1 && last > run.times[0] ? ((tokens - 1) * 1000) / (last - run.times[0]) : null,
      total_ms: (run.end || performance.now()) - run.start, finish_reason: run.finish,
    };
    setStat("ttft", ms(stats.ttft_ms));
    setStat("itl_mean", ms(stats.itl_mean_ms));
    setStat("itl_p50", ms(stats.itl_p50_ms));
    setStat("itl_p95", ms(stats.itl_p95_ms));
    setStat("prompt_tokens", stats.prompt_tokens ?? "–");
    setStat("completion_tokens", stats.completion_tokens ?? "–");
    setStat("tok_s", stats.tok_s === null ? "–" : stats.tok_s.toFixed(1));
    setStat("total", ms(stats.total_ms));
    setStat("finish", stats.finish_reason || "–");
    window.playgroundStats = stats;
  }

  function textOf(choice) {
    return endpoint() === "chat" ? (choice.delta ? choice.delta.content : choice.message && choice.message.content)
      : choice.text;
  }

  async function send(event) {
    event.preventDefault();
    errorBox.hidden = true;
    answer.textContent = "";
    const b = body();
    const run = { start: performance.now(), times: [], usage: null, finish: null, end: null };
    controller = new AbortController();
    stopButton.disabled = false;
    state.textContent = "· sending";
    document.body.dataset.playground = "running";
    try {
      const response = await fetch(api + path(), {
        method: "POST", signal: controller.signal,
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}` },
        body: JSON.stringify(b),
      });
      if (!response.ok) {
        const detail = await response.json().catch(() => ({}));
        throw new Error(`HTTP ${response.status}: ${(detail.error && detail.error.message) || response.statusText}`);
      }
      if (!b.stream) {
        const data = await response.json();
        run.times.push(performance.now());
        answer.textContent = textOf(data.choices[0]) || "";
        run.usage = data.usage;
        run.finish = data.choices[0].finish_reason;
      } else {
        state.textContent = "· streaming";
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value: piece, done } = await reader.read();
          if (done) break;
          buffer += piece;
          const events = buffer.split("\n\n");
          buffer = events.pop();
          for (const ev of events) {
            const line = ev.split("\n").find((l) => l.startsWith("data:"));
            if (!line) continue;
            const data = line.slice(5).trim();
            if (data === "[DONE]") continue;
            const chunk = JSON.parse(data);
            if (chunk.error) throw new Error(chunk.error.message);
            if (chunk.usage) run.usage = chunk.usage;
            for (const choice of chunk.choices || []) {
              const text = textOf(choice);
              if (text) {
                run.times.push(performance.now());
                answer.textContent += text;
              }
              if (choice.finish_reason) run.finish = choice.finish_reason;
            }
            report(run);
          }
        }
      }
      run.end = performance.now();
      report(run);
      state.textContent = "· done";
      document.body.dataset.playground = "done";
    } catch (err) {
      run.end = performance.now();
      report(run);
      errorBox.hidden = false;
      errorBox.textContent = err.name === "AbortError" ? "Stopped." : String(err.message || err);
      state.textContent = "";
      document.body.dataset.playground = err.name === "AbortError" ? "stopped" : "error";
    } finally {
      stopButton.disabled = true;
      controller = null;
    }
  }

  function syncEndpoint() {
    const chat = endpoint() === "chat";
    for (const el of form.querySelectorAll(".chat-only")) el.hidden = !chat;
    for (const el of form.querySelectorAll(".completion-only")) el.hidden = chat;
    showCode();
  }

  form.addEventListener("submit", send);
  form.addEventListener("input", showCode);
  form.addEventListener("change", syncEndpoint);
  stopButton.addEventListener("click", () => controller && controller.abort());
  syncEndpoint();
})();
