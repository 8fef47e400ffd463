// The job page: reads /v1/imports/{id} (and its /tasks, /failures) and follows /v1/imports/{id}/events with the access key
// in an Authorization header (fetch, not EventSource, which cannot send headers). The key comes
// from the URL fragment (#key=..., never sent to a server) or the form, and stays in this tab's
// sessionStorage.
"use strict";

(() => {
  const KEY_ITEM = "bayport-access-key";
  const SVG = "http://www.w3.org/2000/svg";
  const FINAL = new Set(["succeeded", "partially_failed", "failed", "cancelled", "needs_review"]);
  const FAILURES_SHOWN = 100;
  const TASKS_SHOWN = 100;
  const TASKS_EVERY_MS = 5000;
  const jobId = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop());
  const $ = (id) => document.getElementById(id);

  class Unauthorized extends Error {}

  let failuresShown = -1; // the failure count the table was last loaded for
  let failuresLoading = false;

  function takeKeyFromFragment() {
    const params = new URLSearchParams(location.hash.slice(1));
    const key = params.get("key");
    if (key) {
      sessionStorage.setItem(KEY_ITEM, key);
      history.replaceState(null, "", location.pathname + location.search); // out of sight
    }
  }

  function headers() {
    return { Authorization: "Bearer " + (sessionStorage.getItem(KEY_ITEM) || "") };
  }

  async function api(path) {
    const r = await fetch(path, { headers: headers(), cache: "no-store" });
    if (r.status === 401) throw new Unauthorized();
    if (!r.ok) throw new Error(`${path}: HTTP ${r.status} ${await r.text()}`);
    return r.json();
  }

  function askForKey(message) {
    sessionStorage.removeItem(KEY_ITEM);
    $("job").hidden = true;
    $("key-message").textContent = message;
    $("key-form").hidden = false;
    $("key-input").focus();
  }

  // --- formatting --------------------------------------------------------------------------

  function fmtCount(n) {
    return Number(n).toLocaleString("en-US");
  }

  function fmtBytes(n) {
    if (n === null || n === undefined) return "?";
    const units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) {
      n /= 1000;
      i += 1;
    }
    return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
  }

  function fmtDuration(s) {
    if (s === null || s === undefined) return "unknown";
    s = Math.round(s);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = s % 60;
    if (h) return `${h} h ${m} min`;
    if (m) return `${m} min ${sec} s`;
    return `${sec} s`;
  }

  function fmtTime(iso) {
    return new Date(iso).toISOString().slice(11, 19);
  }

  // --- rendering ---------------------------------------------------------------------------

  function renderJob(job) {
    $("summary").textContent =
      `${job.dataset} / ${job.segment} · run ${job.run}` +
      (job.in_place ? " · in place" : "") +
      ` · submitted ${new Date(job.created_at).toISOString().replace("T", " ").slice(0, 19)} UTC`;
    const problem = job.error || job.review_reason;
    $("error").hidden = !problem;
    $("error").textContent = problem || "";
    if (job.progress) renderProgress(job.progress);
  }

  function renderProgress(p) {
    const state = $("state");
    state.textContent = p.state.replace("_", " ");
    state.className = `state state-${p.state}`;
    document.body.dataset.state = p.state;

    const bar = $("bar");
    const total = p.objects_total;
    if (total === null) {
      bar.classList.add("indeterminate");
      $("bar-ok").style.width = "0";
      $("bar-failed").style.width = "0";
      bar.removeAttribute("aria-valuenow");
      $("objects").textContent = `listing… ${fmtCount(p.objects_listed)} so far`;
    } else {
      bar.classList.remove("indeterminate");
      const scale = total > 0 ? 100 / total : 0;
      const failed = Math.min(p.failed, p.objects_done);
      $("bar-ok").style.width = `${(p.objects_done - failed) * scale}%`;
      $("bar-failed").style.width = `${failed * scale}%`;
      bar.setAttribute("aria-valuenow", String(p.percent));
      $("objects").textContent =
        `${fmtCount(p.objects_done)} of ${fmtCount(total)} (${p.percent.toFixed(1)}%)`;
    }
    $("bytes").textContent =
      p.bytes_total === null
        ? `${fmtBytes(p.bytes_done)} (${fmtBytes(p.bytes_listed)} listed)`
        : `${fmtBytes(p.bytes_done)} of ${fmtBytes(p.bytes_total)}`;
    const final = FINAL.has(p.state);
    $("rate-label").textContent = final ? "Average rate" : "Rate";
    $("rate").textContent =
      `${p.objects_per_second.toFixed(1)} objects/s · ${p.mb_per_second.toFixed(2)} MB/s`;
    $("eta").textContent = final ? "done" : fmtDuration(p.eta_seconds);
    $("failed").textContent = fmtCount(p.failed);
    $("failed").className = p.failed ? "error" : "";
    renderChart(p);
    if (p.failed !== failuresShown && !failuresLoading) loadFailures(p.failed).catch(console.warn);
    maybeLoadTasks();
  }

  function renderChart(p) {
    const width = 720;
    const height = 180;
    const pad = { left: 44, right: 8, top: 10, bottom: 22 };
    const points = p.throughput;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("id", "throughput");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "objects per second over time");
    const perSecond = (n) => n / p.bucket_seconds;
    const top = Math.max(1e-9, ...points.map((b) => perSecond(b.objects)));
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const step = plotW / Math.max(points.length, 1);
    const add = (name, attrs, text) => {
      const el = document.createElementNS(SVG, name);
      for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
      if (text !== undefined) el.textContent = text;
      svg.appendChild(el);
      return el;
    };
    add("line", { x1: pad.left, y1: pad.top + plotH, x2: width - pad.right, y2: pad.top + plotH, class: "axis" });
    add("line", { x1: pad.left, y1: pad.top, x2: pad.left, y2: pad.top + plotH, class: "axis" });
    add("text", { x: pad.left - 4, y: pad.top + 8, class: "tick", "text-anchor": "end" }, top.toFixed(top < 10 ? 1 : 0));
    add("text", { x: pad.left - 4, y: pad.top + plotH, class: "tick", "text-anchor": "end" }, "0");
    points.forEach((b, i) => {
      const h = (perSecond(b.objects) / top) * plotH;
      const hFailed = (perSecond(b.failed) / top) * plotH;
      const x = pad.left + i * step + step * 0.1;
      const w = Math.max(step * 0.8, 1);
      if (h > hFailed) {
        add("rect", { x, y: pad.top + plotH - h, width: w, height: h - hFailed, class: "chart-done" });
      }
      if (hFailed > 0) {
        add("rect", { x, y: pad.top + plotH - hFailed, width: w, height: hFailed, class: "chart-failed" });
      }
    });
    if (points.length) {
      add("text", { x: pad.left, y: height - 6, class: "tick" }, fmtTime(points[0].at));
      add("text", { x: width - pad.right, y: height - 6, class: "tick", "text-anchor": "end" },
        fmtTime(points[points.length - 1].at));
    }
    $("chart").replaceChildren(svg);
  }

  async function loadFailures(count) {
    failuresLoading = true;
    try {
      const page = await api(`/v1/imports/${encodeURIComponent(jobId)}/failures?limit=${FAILURES_SHOWN}`);
      const body = $("failures").tBodies[0];
      body.replaceChildren(
        ...page.items.map((f) => {
          const tr = document.createElement("tr");
          for (const value of [f.source_key, f.error_code || "", f.error_message || "", f.attempts]) {
            const td = document.createElement("td");
            td.textContent = String(value); // textContent: keys and messages are data, not HTML
            tr.appendChild(td);
          }
          return tr;
        }),
      );
      $("failures").hidden = page.items.length === 0;
      $("failures-note").textContent = page.items.length
        ? page.next_offset === null
          ? `${page.items.length} failed object(s).`
          : `The first ${page.items.length} of ${fmtCount(count)} failed objects.`
        : "None so far.";
      failuresShown = count;
    } finally {
      failuresLoading = false;
    }
  }

  // The job's own tasks (/v1/imports/{id}/tasks): its planning and each shard's copy.
  let tasksLoadedAt = 0;
  let tasksLoading = false;

  function fmtMoment(iso) {
    return iso ? fmtTime(iso) : "–";
  }

  async function loadTasks() {
    tasksLoading = true;
    try {
      const t = await api(`/v1/imports/${encodeURIComponent(jobId)}/tasks?limit=${TASKS_SHOWN}`);
      const rows = [t.planning, ...t.items];
      const body = $("tasks").tBodies[0];
      body.replaceChildren(
        ...rows.map((task) => {
          const tr = document.createElement("tr");
          tr.className = `task task-${task.state}`;
          const name = task.kind === "plan" ? "listing" : `shard ${task.seq} (${task.kind})`;
          const cells = [
            name,
            task.state,
            task.attempts === null ? "–" : task.attempts,
            fmtCount(task.objects),
            task.task_id || "–",
            fmtMoment(task.sent_at),
            fmtMoment(task.heartbeat_at),
            fmtMoment(task.finished_at),
            task.error || "",
          ];
          for (const value of cells) {
            const td = document.createElement("td");
            td.textContent = String(value); // data, not HTML
            tr.appendChild(td);
          }
          return tr;
        }),
      );
      $("tasks").hidden = false;
      const counts = Object.entries(t.counts)
        .filter(([, n]) => n > 0)
        .map(([state, n]) => `${fmtCount(n)} ${state}`)
        .join(" · ");
      $("tasks-note").textContent =
        `${fmtCount(t.shards_total)} shard(s)` + (counts ? `: ${counts}` : "") +
        (t.next_offset === null ? "" : ` (the first ${t.items.length} shown)`);
      tasksLoadedAt = Date.now();
    } finally {
      tasksLoading = false;
    }
  }

  function maybeLoadTasks() {
    if (!tasksLoading && Date.now() - tasksLoadedAt >= TASKS_EVERY_MS) loadTasks().catch(console.warn);
  }

  // --- following the job -------------------------------------------------------------------

  async function follow() {
    const r = await fetch(`/v1/imports/${encodeURIComponent(jobId)}/events`, {
      headers: headers(),
      cache: "no-store",
    });
    if (r.status === 401) throw new Unauthorized();
    if (!r.ok) throw new Error(`events: HTTP ${r.status}`);
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let last = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return last;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).trimStart())
          .join("\n");
        if (data) {
          last = JSON.parse(data);
          renderProgress(last);
        }
      }
    }
  }

  async function start() {
    $("job-id").textContent = jobId;
    try {
      renderJob(await api(`/v1/imports/${encodeURIComponent(jobId)}`));
      $("key-form").hidden = true;
      $("job").hidden = false;
      await loadTasks();
      let last = null;
      while (!last || !FINAL.has(last.state)) {
        try {
          last = (await follow()) || last;
        } catch (err) {
          if (err instanceof Unauthorized) throw err;
          console.warn(err);
        }
        if (!last || !FINAL.has(last.state)) await new Promise((ok) => setTimeout(ok, 2000));
      }
      // The final state: the job's own fields (error, counts) and every failure shown.
      renderJob(await api(`/v1/imports/${encodeURIComponent(jobId)}`));
      await loadFailures(last.failed);
      await loadTasks();
      document.body.dataset.ready = "final";
    } catch (err) {
      if (err instanceof Unauthorized) {
        askForKey("That access key was refused. Enter a key of the job's workspace.");
      } else {
        $("state").textContent = "error";
        $("error").hidden = false;
        $("error").textContent = String(err.message || err);
        $("job").hidden = false;
      }
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY_ITEM, $("key-input").value.trim());
      $("key-input").value = "";
      start();
    });
    takeKeyFromFragment();
    if (sessionStorage.getItem(KEY_ITEM)) start();
    else askForKey("This page reads the job through the API: enter an access key. It stays in this tab only.");
  });
})();
