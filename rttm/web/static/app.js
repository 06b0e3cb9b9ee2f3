/* RTTM dashboard: polls the JSON API every 2 s and renders each panel; loads trade traces.
 *
 * Everything that comes from the API is inserted as text (textContent, text nodes,
 * createElement), never parsed as HTML: event messages and DLQ reasons are producer input.
 * No framework and no build step; uPlot (vendor/uplot) draws the time series.
 */
(() => {
  "use strict";

  const POLL_MS = 2000; // the metrics windows are 10 s long; 2 s keeps "now" close to them
  const TIMEOUT_MS = 5000; // a poll slower than this counts as a lost connection
  const MINUTES = 15; // the averages and charts cover this many minutes
  const ALERTS_LIMIT = 50; // recent alert transitions listed
  const MAX_ROWS = 2000; // rows drawn per list at most, whatever the API sends (it caps them too)
  const DASH = "\u2014";

  const $ = (id) => document.getElementById(id);

  /** A new element; props: class, text, title, on<event>, other attributes. Children as text. */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : String(child)); // strings become text nodes
    }
    return node;
  }

  const cell = (text, cls) => el("td", { class: cls, text });
  const setText = (id, text) => {
    const node = $(id);
    if (node.textContent !== text) node.textContent = text;
  };

  /** How many entries the API left out of a capped list (its `omitted` count), or 0. */
  const omittedOf = (data, name) => {
    const omitted = data && typeof data.omitted === "object" && data.omitted ? data.omitted[name] : 0;
    return isNum(omitted) && omitted > 0 ? omitted : 0;
  };
  const moreText = (count) => `and ${fmtNum(count)} more`;

  /** Replace a node's children with ``nodes`` in one DOM operation (no spread: any length). */
  function replaceAll(parent, nodes) {
    const fragment = document.createDocumentFragment();
    for (const node of nodes.length > MAX_ROWS ? nodes.slice(0, MAX_ROWS) : nodes) fragment.append(node);
    parent.replaceChildren(fragment);
    return Math.max(0, nodes.length - MAX_ROWS); // what the page itself left out
  }

  /** Replace a table body's rows (then "and N more" for those left out), or one muted row saying it is empty. */
  function fillRows(tbody, rows, emptyText, more = 0) {
    const columns = tbody.closest("table").querySelectorAll("thead th").length || 1;
    if (!rows.length && !more) {
      tbody.replaceChildren(el("tr", null, el("td", { class: "empty", colspan: columns, text: emptyText })));
      return;
    }
    const left = more + replaceAll(tbody, rows);
    if (left) tbody.append(el("tr", { class: "more" }, el("td", { class: "hint", colspan: columns, text: moreText(left) })));
  }

  function fillList(list, items, emptyText, more = 0) {
    if (!items.length && !more) {
      list.replaceChildren(el("li", { class: "empty", text: emptyText }));
      return;
    }
    const left = more + replaceAll(list, items);
    if (left) list.append(el("li", { class: "more hint", text: moreText(left) }));
  }

  // ---- formatting -------------------------------------------------------------------------

  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  const asList = (v) => (Array.isArray(v) ? v : []);

  function fmtNum(v, digits = 0) {
    if (!isNum(v)) return DASH;
    return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  function fmtRate(v) {
    if (!isNum(v)) return DASH;
    const a = Math.abs(v);
    return fmtNum(v, a >= 100 ? 0 : a >= 10 ? 1 : 2);
  }

  function fmtDuration(seconds) {
    if (!isNum(seconds)) return DASH;
    const s = Math.abs(seconds);
    let out;
    if (s < 60) out = `${fmtNum(s, s < 10 ? 1 : 0)} s`;
    else if (s < 3600) out = `${Math.floor(s / 60)}m ${Math.floor(s % 60)}s`;
    else if (s < 86400) out = `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
    else out = `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
    return seconds < 0 ? `-${out}` : out;
  }

  function fmtMs(v) {
    if (!isNum(v)) return DASH;
    const a = Math.abs(v);
    if (a < 10) return `${fmtNum(v, a < 1 ? 2 : 1)} ms`;
    if (a < 1000) return `${fmtNum(v)} ms`;
    if (a < 60000) return `${fmtNum(v / 1000, 2)} s`;
    return fmtDuration(v / 1000);
  }

  function parseTime(iso) {
    const ms = typeof iso === "string" ? Date.parse(iso) : NaN;
    return Number.isNaN(ms) ? null : ms;
  }

  /** "HH:MM:SS" (or with milliseconds) in UTC, like every time on the page. */
  function fmtClock(iso, withMs = false) {
    const ms = parseTime(iso);
    return ms === null ? DASH : new Date(ms).toISOString().slice(11, withMs ? 23 : 19);
  }

  function fmtStamp(iso) {
    const ms = parseTime(iso);
    return ms === null ? DASH : new Date(ms).toISOString().slice(0, 19).replace("T", " ");
  }

  /** Chart axis and legend time: "HH:MM" (end 16) or "HH:MM:SS" (end 19) of unix seconds, UTC. */
  const clockOf = (seconds, end) => new Date(seconds * 1000).toISOString().slice(11, end);

  const fmtAxis = (v) => v.toLocaleString("en-US", { maximumFractionDigits: 2 });

  const fmtLabels = (labels) =>
    Object.entries(labels && typeof labels === "object" ? labels : {})
      .map(([k, v]) => `${k}=${v}`)
      .join(", ");

  // ---- badges -----------------------------------------------------------------------------

  const STATUS = { OK: "badge-ok", WARN: "badge-warn", STALL: "badge-bad", STOP: "badge-bad" };
  const SEVERITY = { critical: "badge-bad", warning: "badge-warn", info: "badge-info" };
  const STATE = { firing: "badge-bad", pending: "badge-warn", resolved: "badge-ok", inactive: "badge-muted" };
  const OUTCOME = { completed: "badge-ok", rejected: "badge-bad", "in flight": "badge-info" };
  const EVENT_STATUS = { SUCCESS: "badge-ok", FAILURE: "badge-bad", FAILED: "badge-bad", RETRY: "badge-warn" };
  // How an alert's notification went (see rttm/views/alerts.py).
  const DELIVERY = { delivered: "badge-ok", retrying: "badge-warn", queued: "badge-info", refused: "badge-bad", history: "badge-muted", "not configured": "badge-muted" };
  const LEVEL = { ERROR: "badge-bad", FATAL: "badge-bad", WARN: "badge-warn", WARNING: "badge-warn", INFO: "badge-info" };

  function badge(value, classes) {
    const text = value === null || value === undefined ? "unknown" : String(value);
    const cls = Object.hasOwn(classes, text) ? classes[text] : "badge-muted";
    return el("span", { class: `badge ${cls}`, text });
  }

  // ---- charts -----------------------------------------------------------------------------

  const AXIS = "#8b96a3";
  const GRID = "rgba(255, 255, 255, 0.07)";

  /** One uPlot chart (line, or bars) fed with [{t, value}]; a note when there is nothing to draw. */
  class SeriesChart {
    constructor(container, { label, color, height, legend, bars, format }) {
      Object.assign(this, { container, label, color, height, legend, bars, format, plot: null, span: null });
      new ResizeObserver(() => this.resize()).observe(container);
    }

    width() {
      return Math.max(200, this.container.clientWidth);
    }

    options() {
      const axis = { stroke: AXIS, grid: { stroke: GRID, width: 1 }, ticks: { stroke: GRID, width: 1 } };
      return {
        width: this.width(),
        height: this.height,
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
        legend: { show: this.legend },
        cursor: { drag: { x: false, y: false } },
        scales: {
          x: { time: true, range: (u, min, max) => this.span || [min, max] },
          y: { range: (u, min, max) => [0, isNum(max) && max > 0 ? max * 1.1 : 1] },
        },
        axes: [
          { ...axis, values: (u, splits, i, space, incr) => splits.map((ts) => clockOf(ts, incr < 60 ? 19 : 16)) },
          { ...axis, size: 56, values: (u, splits) => splits.map(fmtAxis) },
        ],
        series: [
          { value: (u, ts) => (ts === null ? DASH : `${clockOf(ts, 19)} UTC`) },
          {
            label: this.label,
            stroke: this.color,
            width: 1.5,
            fill: `${this.color}${this.bars ? "aa" : "33"}`,
            points: { show: false },
            paths: this.bars ? uPlot.paths.bars({ size: [0.9, 10] }) : undefined,
            value: (u, v) => (v === null ? DASH : this.format(v)),
          },
        ],
      };
    }

    note(text) {
      if (this.plot) this.plot.destroy();
      this.plot = null;
      this.container.replaceChildren(el("div", { class: "chart-empty", text }));
    }

    /** Draw ``series``; ``span`` is the [from, to] the x axis covers, in unix seconds (or null). */
    update(series, span) {
      this.span = span;
      if (typeof uPlot === "undefined") return this.note("chart unavailable: uPlot did not load");
      const points = asList(series)
        .map((p) => [parseTime(p && p.t), p && isNum(p.value) ? p.value : null])
        .filter(([ms]) => ms !== null)
        .sort((a, b) => a[0] - b[0]);
      if (!points.length) return this.note("no data in the window yet");
      const data = [points.map(([ms]) => ms / 1000), points.map(([, v]) => v)];
      if (this.plot) this.plot.setData(data);
      else {
        this.container.replaceChildren();
        this.plot = new uPlot(this.options(), data, this.container);
      }
    }

    resize() {
      if (this.plot && this.plot.width !== this.width()) {
        this.plot.setSize({ width: this.width(), height: this.height });
      }
    }
  }

  let tpsChart = null;
  let dlqChart = null;

  // ---- panels -----------------------------------------------------------------------------

  const rendered = new Map(); // panel -> JSON it last drew: unchanged data is not redrawn

  /** Draw a panel if its data changed; a failing panel is reported and the others still draw. */
  function panel(name, data, draw) {
    const key = JSON.stringify(data === undefined ? null : data);
    if (rendered.get(name) === key) return;
    try {
      draw(data === undefined ? null : data);
      rendered.set(name, key);
    } catch (error) {
      rendered.delete(name);
      reportError(error); // surfaces as an uncaught error (console, tests) without stopping the poll
    }
  }

  function drawThroughput(status) {
    const tps = status.tps || {};
    const trades = status.trades || {};
    setText("as-of", status.as_of ? `${fmtStamp(status.as_of)} UTC` : "no data yet");
    setText("tps-now", fmtRate(tps.now));
    setText("tps-avg", fmtRate(tps.avg));
    setText("tps-avg-label", `TPS ${status.minutes ?? MINUTES}-min avg`);
    setText("tps-window", isNum(status.window_seconds) ? `${status.window_seconds}-s windows` : "");
    setText("trades-started", fmtNum(trades.started));
    setText("trades-started-label", `trades started, ${status.minutes ?? MINUTES} min`);
    setText("trades-completed", fmtNum(trades.completed));
    setText("trades-rejected", fmtNum(trades.rejected));
    const rows = asList(tps.by_service).map((s) =>
      el("tr", null, cell(s.service), cell(fmtRate(s.now), "num"), cell(fmtRate(s.avg), "num")),
    );
    fillRows($("tps-services"), rows, "no service reported events", omittedOf(tps, "by_service"));
  }

  function drawConsumers(data) {
    const rows = [];
    for (const c of asList(data.consumers)) {
      const loss = c.time_to_data_loss_seconds;
      rows.push(
        el(
          "tr",
          null,
          el("td", null, el("div", { text: c.service }), el("div", { class: "hint mono", text: c.topic })),
          el("td", null, badge(c.status, STATUS)),
          cell(fmtNum(c.lag), "num"),
          cell(fmtDuration(c.lag_seconds), "num"),
          el("td", { class: "num", title: "until Kafka retention deletes unread messages" },
            el("span", { class: isNum(loss) && loss < 3600 ? "badge badge-bad" : null, text: fmtDuration(loss) })),
        ),
      );
      for (const p of asList(c.partitions)) {
        const rate = isNum(p.consume_rate) ? `${fmtRate(p.consume_rate)} msg/s` : "";
        rows.push(
          el("tr", { class: "sub" },
            cell(`partition ${p.partition}`), cell(rate), cell(fmtNum(p.lag), "num"),
            cell(fmtDuration(p.lag_seconds), "num"), cell("")),
        );
      }
      const partitionsLeft = omittedOf(c, "partitions");
      if (partitionsLeft) {
        rows.push(el("tr", { class: "sub more" }, el("td", { class: "hint", colspan: 5, text: `${moreText(partitionsLeft)} partitions` })));
      }
    }
    fillRows($("consumers"), rows, "no consumer-lag snapshots in the window", data.more);
  }

  function drawDlq(dlq) {
    const d = dlq || {};
    const depth = asList(d.depth);
    const total = depth.reduce((sum, q) => sum + (isNum(q.depth) ? q.depth : 0), 0);
    const depthLeft = omittedOf(d, "depth");
    setText("dlq-total", depth.length ? `${fmtNum(total)}${depthLeft ? "+" : ""}` : DASH);
    setText("dlq-rate", fmtRate(d.rate));
    fillList(
      $("dlq-depth"),
      depth.map((q) => el("li", null, el("span", { class: "mono", text: q.topic }), el("strong", { text: fmtNum(q.depth) }))),
      "no dead-letter queue has messages",
      depthLeft,
    );
    dlqChart.update(d.series, d.span);
    const rows = asList(d.by_reason).map((r) =>
      el("tr", null, cell(r.topic, "mono"), cell(r.reason, "wrap"), cell(fmtNum(r.events), "num")),
    );
    fillRows($("dlq-reasons"), rows, "no dead-lettered messages in the window", omittedOf(d, "by_reason"));
  }

  function drawLatency(latency) {
    const l = latency || {};
    const e2e = l.e2e || {};
    setText("e2e-p50", fmtMs(e2e.p50));
    setText("e2e-p95", fmtMs(e2e.p95));
    setText("e2e-p99", fmtMs(e2e.p99));
    const rows = asList(l.hops).map((h) =>
      el("tr", null, cell(`${h.from_stage} \u2192 ${h.to_stage}`),
        cell(fmtMs(h.p50), "num"), cell(fmtMs(h.p95), "num"), cell(fmtMs(h.p99), "num")),
    );
    fillRows($("hops"), rows, "no hops measured in the window", omittedOf(l, "hops"));
  }

  function drawErrors(status) {
    const errors = asList(status.errors).map((e) =>
      el("tr", null, cell(e.service), cell(fmtNum(e.errors), "num"), cell(fmtRate(e.rate), "num")),
    );
    fillRows($("errors"), errors, "no error events in the window", omittedOf(status, "errors"));
    const logs = asList(status.logs).map((g) =>
      el("tr", null, cell(g.service), el("td", null, badge(g.level, LEVEL)), cell(fmtNum(g.events), "num")),
    );
    fillRows($("logs"), logs, "no WARN or ERROR log events in the window", omittedOf(status, "logs"));
  }

  function drawStuck(data) {
    const items = asList(data.stuck).map((s) =>
      el(
        "li",
        null,
        el("button", { class: "link", type: "button", title: "show the trace", text: s.trade_id, onclick: () => openTrace(s.trade_id) }),
        el("span", null, "after ", el("strong", { text: s.stage }), ` at ${s.service}`),
        el("span", { class: "hint", text: `last ${s.last_event_type} at ${fmtClock(s.last_event_time)}, stuck since ${fmtClock(s.detected_at)}` }),
      ),
    );
    fillList($("stuck-list"), items, "no trade is stuck", data.more);
    if (data.untracked > 0) {
      $("stuck-list").append(el("li", { class: "more hint", text: `${fmtNum(data.untracked)} trades not tracked in the window (the engine's trade cap): stuck detection cannot see them` }));
    }
  }

  function alertItem(a) {
    const value = isNum(a.value) ? `value ${fmtNum(a.value, Number.isInteger(a.value) ? 0 : 2)}` : "";
    return el(
      "li",
      null,
      el("div", { class: "alert-head" },
        badge(a.severity, SEVERITY),
        el("span", { class: "alert-rule", text: a.rule }),
        el("span", { class: "labels", text: fmtLabels(a.labels) })),
      a.summary ? el("div", { text: a.summary }) : null,
      el("div", { class: "alert-meta", text: `${value}${value ? " \u00b7 " : ""}since ${fmtStamp(a.started_at)}` }),
      deliveryLine(a),
    );
  }

  /** Where the alert's notification is, and whether Alertmanager silences it (firing only). */
  function deliveryLine(a) {
    if (!a.delivery) return null;
    const silences = Array.isArray(a.silenced_by) ? a.silenced_by : [];
    return el("div", { class: "alert-meta" },
      "notification ", badge(a.delivery, DELIVERY),
      a.delivery_error ? el("span", { class: "hint", title: a.delivery_error, text: ` ${a.delivery_error}` }) : null,
      silences.length ? el("span", null, " ", el("span", { class: "badge badge-muted", title: `silence ${silences.join(", ")}`, text: "silenced" })) : null,
    );
  }

  function drawAlerts(alerts) {
    const firing = asList(alerts.firing);
    const firingLeft = omittedOf(alerts, "firing");
    fillList($("alerts-firing"), firing.map(alertItem), "nothing firing", firingLeft);
    fillList($("alerts-pending"), asList(alerts.pending).map(alertItem), "nothing pending", omittedOf(alerts, "pending"));
    const firingCount = firing.length + firingLeft;
    const count = $("firing-count");
    count.textContent = `${fmtNum(firingCount)} firing`;
    count.className = `badge ${firingCount ? "badge-bad" : "badge-muted"}`;
    document.title = firingCount ? `(${fmtNum(firingCount)} firing) RTTM` : "RTTM \u2014 trade monitoring";
    if (alerts.recent === null) return; // only the status call answered: keep the history shown
    const rows = asList(alerts.recent).map((a) =>
      el("tr", null, el("td", { class: "mono", title: a.at, text: fmtClock(a.at) }), el("td", null, badge(a.state, STATE)),
        el("td", null, el("div", { text: a.rule }), el("div", { class: "labels", text: fmtLabels(a.labels) })),
        cell(isNum(a.value) ? fmtNum(a.value, Number.isInteger(a.value) ? 0 : 2) : DASH, "num")),
    );
    fillRows($("alerts-recent"), rows, "no alert transitions yet", omittedOf(alerts, "recent"));
  }

  /** The minutes the status covers, up to its newest window, as unix seconds for the charts. */
  function spanOf(status) {
    const end = parseTime(status.as_of);
    if (end === null) return null;
    return [end / 1000 - 60 * (isNum(status.minutes) ? status.minutes : MINUTES), end / 1000];
  }

  function drawStatus(status) {
    const tps = status.tps || {};
    const throughput = {
      as_of: status.as_of, minutes: status.minutes, window_seconds: status.window_seconds,
      tps: { now: tps.now, avg: tps.avg, by_service: tps.by_service, omitted: tps.omitted }, trades: status.trades,
    };
    panel("throughput", throughput, drawThroughput);
    const span = spanOf(status);
    panel("tps-series", { series: tps.series, span }, (d) => tpsChart.update(d.series, d.span));
    panel("consumers", { consumers: status.consumers, more: omittedOf(status, "consumers") }, drawConsumers);
    panel("dlq", { ...(status.dlq || {}), span }, drawDlq);
    panel("latency", status.latency, drawLatency);
    panel("errors", { errors: status.errors, logs: status.logs, omitted: status.omitted }, drawErrors);
    panel("stuck", { stuck: status.stuck, more: omittedOf(status, "stuck"), untracked: status.trades?.untracked ?? 0 }, drawStuck);
  }

  // ---- polling ----------------------------------------------------------------------------

  async function getJson(url) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
    try {
      const response = await fetch(url, { signal: abort.signal, cache: "no-store", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
      return await response.json();
    } finally {
      clearTimeout(timer);
    }
  }

  let lastUpdate = null;

  function showConnection(ok, problem) {
    const conn = $("conn");
    const now = new Date().toISOString().slice(11, 19);
    if (ok) {
      lastUpdate = now;
      conn.textContent = `updated ${now}`;
      conn.className = "conn conn-ok";
      conn.title = "";
    } else {
      conn.textContent = lastUpdate ? `connection lost (last update ${lastUpdate})` : "connection lost";
      conn.className = "conn conn-lost";
      conn.title = problem;
    }
    document.body.classList.toggle("stale", !ok);
  }

  async function poll() {
    const [status, alerts] = await Promise.allSettled([
      getJson(`api/status?minutes=${MINUTES}`),
      getJson(`api/alerts?limit=${ALERTS_LIMIT}`),
    ]);
    if (status.status === "fulfilled") drawStatus(status.value);
    if (alerts.status === "fulfilled") panel("alerts", alerts.value, drawAlerts);
    else if (status.status === "fulfilled" && status.value.alerts) {
      panel("alerts", { ...status.value.alerts, recent: null }, drawAlerts);
    }
    const failed = [status, alerts].filter((r) => r.status === "rejected");
    showConnection(!failed.length, failed.map((r) => String(r.reason && r.reason.message)).join("; "));
    setTimeout(poll, POLL_MS);
  }

  // ---- trade trace ------------------------------------------------------------------------

  // The API answers a page of a trace: its newest events, each long text cut (it says so),
  // and a cursor to the next older page. The page shows one page, "older events" adds the
  // next above it, and a cut text is fetched whole only when asked: a hot trade of 20,000
  // events never arrives at once.
  const TRACE_LIMIT = 500; // events per page (the API's default)

  let traceRequest = 0; // a newer search wins over a slower older one

  function showTraceError(text) {
    const box = $("trace-error");
    box.textContent = text;
    box.hidden = false;
    $("trace").replaceChildren();
  }

  function listTitle(title, shown, total) {
    return isNum(total) && total > shown ? `${title} (newest ${fmtNum(shown)} of ${fmtNum(total)})` : `${title} (${fmtNum(shown)})`;
  }

  function tableOf(headers, body) {
    return el("div", { class: "scroll" },
      el("table", { class: "data compact" },
        el("thead", null, el("tr", null, ...headers.map((h) => el("th", { class: h === "+ms" ? "num" : null, text: h })))),
        body));
  }

  function section(title, headers, rows, emptyText, total) {
    const head = el("h3", { text: listTitle(title, rows.length, total) });
    if (!rows.length) return [head, el("p", { class: "hint", text: emptyText })];
    return [head, tableOf(headers, el("tbody", null, ...rows))];
  }

  /** Fetch the whole of a text the API cut, in place of the cut one. */
  async function showWhole(box, button, source, entry) {
    button.disabled = true;
    button.textContent = "loading\u2026";
    try {
      const body = await getJson(`api/text/${source}?key=${encodeURIComponent(entry.key)}&time=${encodeURIComponent(entry.time)}`);
      box.textContent = String(body.text ?? "");
      button.remove();
    } catch (error) {
      button.disabled = false;
      button.textContent = `show whole message (failed: ${error.message})`;
    }
  }

  /**
   * A cell of a text the API may have cut (`<field>_truncated`), with a button for the rest.
   * The text scrolls in a box of a few lines, so a long one does not stretch the table.
   */
  function textCell(entry, field, source, cls) {
    const box = el("div", { class: "clip", text: entry[field] ?? "" });
    const td = el("td", { class: cls }, box);
    if (entry[`${field}_truncated`] === true) {
      const more = el("button", { type: "button", class: "link trace-more", text: `show whole message (${fmtNum(entry[`${field}_length`])} characters)` });
      more.addEventListener("click", () => showWhole(box, more, source, entry));
      box.append(" \u2026");
      td.append(more);
    }
    return td;
  }

  function queuesOf(e) {
    const route = e.source_queue || e.target_queue ? `${e.source_queue || DASH} \u2192 ${e.target_queue || DASH}` : "";
    const where = e.queue_partition !== null && e.queue_partition !== undefined
      ? `p${e.queue_partition}${e.queue_offset !== null && e.queue_offset !== undefined ? ` @${e.queue_offset}` : ""}`
      : "";
    return el("td", { class: "mono" }, route, route && where ? el("br") : null, where ? el("span", { class: "hint", text: where }) : null);
  }

  function stuckLine(s) {
    if (!s) return null;
    const base = `stopped after stage ${s.stage} at ${s.service}: last event ${s.last_event_type} at ${fmtStamp(s.last_event_time)}, detected ${fmtStamp(s.detected_at)}`;
    return s.recovered_at
      ? el("p", { class: "trace-stuck recovered", text: `was ${base}; recovered at ${fmtStamp(s.recovered_at)}` })
      : el("p", { class: "trace-stuck", text: `STUCK \u2014 ${base}` });
  }

  function eventRow(e) {
    return el("tr", { class: "trace-event" },
      cell(fmtClock(e.time, true), "mono"),
      cell(isNum(e.since_previous_ms) ? `+${fmtMs(e.since_previous_ms)}` : "start", "num"),
      cell(e.service),
      cell(e.event_type, "mono"),
      el("td", null, badge(e.status, EVENT_STATUS)),
      queuesOf(e),
      textCell(e, "message", "events", "message wrap"));
  }

  /** Which events the timeline shows, and the "older events" button while there are more. */
  function showTimelineCount(view) {
    const all = view.next === null;
    view.count.textContent = all
      ? `showing all ${fmtNum(view.shown)} events`
      : `showing the newest ${fmtNum(view.shown)} of ${fmtNum(view.total)} events`;
    view.older.hidden = all;
    view.older.disabled = false;
    view.older.textContent = "older events";
  }

  /** Fetch the next older page and add its events above the ones shown. */
  async function loadOlder(view) {
    const request = traceRequest;
    view.older.disabled = true;
    view.older.textContent = "loading older events\u2026";
    let body;
    try {
      body = await getJson(`api/trace/${encodeURIComponent(view.id)}?limit=${TRACE_LIMIT}&before=${encodeURIComponent(view.next)}`);
    } catch (error) {
      if (request !== traceRequest) return;
      view.older.disabled = false;
      view.older.textContent = `older events (failed: ${error.message}; again)`;
      return;
    }
    if (request !== traceRequest) return;
    const rows = asList(body.events).map(eventRow);
    view.body.prepend(...rows);
    view.shown += rows.length;
    view.next = typeof body.next === "string" ? body.next : null;
    if (isNum(body.total)) view.total = body.total;
    showTimelineCount(view);
  }

  function timeline(t, id) {
    const rows = asList(t.events).map(eventRow);
    const head = el("h3", { text: "Timeline" });
    if (!rows.length) return [head, el("p", { class: "hint", text: "no trade events" })];
    const view = {
      id,
      next: typeof t.next === "string" ? t.next : null,
      total: isNum(t.total) ? t.total : rows.length,
      shown: rows.length,
      body: el("tbody", null, ...rows),
      count: el("span", { class: "hint trace-count" }),
      older: el("button", { type: "button", class: "link trace-older" }),
    };
    view.older.addEventListener("click", () => loadOlder(view));
    showTimelineCount(view);
    return [head, el("p", { class: "trace-paging" }, view.count, " ", view.older),
      tableOf(["time", "+ms", "service", "event type", "status", "queues", "message"], view.body)];
  }

  function drawTrace(t, id) {
    const dlq = asList(t.dlq).map((d) =>
      el("tr", { class: "trace-dlq" }, cell(fmtClock(d.time, true), "mono"), cell(d.service), cell(d.topic, "mono"), textCell(d, "reason", "dlq", "wrap")),
    );
    const errors = asList(t.errors).map((e) =>
      el("tr", { class: "trace-err" }, cell(fmtClock(e.time, true), "mono"), cell(e.service), cell(e.error_type, "mono"), textCell(e, "error_message", "errors", "wrap")),
    );
    const logs = asList(t.logs).map((g) =>
      el("tr", { class: "trace-log" }, cell(fmtClock(g.time, true), "mono"), cell(g.service),
        el("td", null, badge(g.level, LEVEL)), cell(g.category, "mono"), textCell(g, "message", "logs", "wrap")),
    );
    const first = t.next ? null : asList(t.events)[0]; // the trade's first event is on the last page
    $("trace").replaceChildren(
      el("div", { class: "trace-head" },
        el("span", { class: "trade", text: t.trade_id }),
        badge(t.outcome, OUTCOME),
        el("span", null, "stage ", el("strong", { text: t.stage ?? DASH })),
        el("span", null, "service ", el("strong", { text: t.service ?? DASH })),
        el("span", { class: "hint", text: first ? `first event ${fmtStamp(first.time)} UTC` : "" })),
      stuckLine(t.stuck) ?? "",
      ...timeline(t, id),
      ...section("DLQ entries", ["time", "service", "topic", "reason"], dlq, "none", t.dlq_total),
      ...section("Errors", ["time", "service", "type", "message"], errors, "none", t.errors_total),
      ...section("Logs", ["time", "service", "level", "category", "message"], logs, "none", t.logs_total),
    );
  }

  async function openTrace(rawId) {
    const id = String(rawId || "").trim();
    $("trade-search").value = id;
    if (!id) return showTraceError("enter a trade id");
    const request = ++traceRequest;
    $("trace-error").hidden = true;
    $("trace").replaceChildren(el("p", { class: "hint", text: `loading ${id}\u2026` }));
    let response;
    let body = null;
    try {
      response = await fetch(`api/trace/${encodeURIComponent(id)}?limit=${TRACE_LIMIT}`, { cache: "no-store", headers: { Accept: "application/json" } });
      body = await response.json().catch(() => null);
    } catch (error) {
      if (request === traceRequest) showTraceError(`cannot load the trace of '${id}': ${error.message}`);
      return;
    }
    if (request !== traceRequest) return;
    if (response.status === 404) {
      // The API says "no trade 'X'"; a route miss (an id with '/') says only "Not Found".
      const detail = body && typeof body.detail === "string" && body.detail.startsWith("no trade") ? body.detail : `no trade '${id}'`;
      return showTraceError(detail);
    }
    if (!response.ok || !body) return showTraceError(`the trace of '${id}' failed: HTTP ${response.status}`);
    try {
      drawTrace(body, id);
    } catch (error) {
      showTraceError(`cannot show the trace of '${id}': ${error.message}`);
      reportError(error);
      return;
    }
    history.replaceState(null, "", `#trade=${encodeURIComponent(id)}`);
    $("panel-trace").scrollIntoView({ block: "start" });
  }

  function traceFromHash() {
    const match = /^#trade=(.+)$/.exec(location.hash);
    if (!match) return;
    let id;
    try {
      id = decodeURIComponent(match[1]);
    } catch (_malformed) {
      return; // a hand-edited hash must not stop the dashboard
    }
    openTrace(id);
  }

  // ---- start ------------------------------------------------------------------------------

  function start() {
    tpsChart = new SeriesChart($("tps-chart"), { label: "TPS", color: "#5aa9e6", height: 170, legend: true, format: fmtRate });
    dlqChart = new SeriesChart($("dlq-chart"), { label: "DLQ events", color: "#f0883e", height: 90, legend: false, bars: true, format: (v) => fmtNum(v) });
    $("trade-search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      openTrace($("trade-search").value);
    });
    window.addEventListener("hashchange", traceFromHash);
    traceFromHash();
    poll();
  }

  start();
})();
