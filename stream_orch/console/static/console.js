// stream-orch console: refreshes the figures of a server-rendered page from its JSON endpoint.
// Written for this project (no library); the page reads without it.
(function () {
  "use strict";
  var me = document.currentScript;
  var endpoint = me.getAttribute("data-endpoint");
  function fmt(v, unit) {
    if (v === null || v === undefined) return "-";
    return (typeof v === "number" && !Number.isInteger(v) ? v.toFixed(1) : String(v)) + (unit || "");
  }
  function setText(el, text) { if (el && el.textContent !== text) el.textContent = text; }
  function apply(fig) {
    var banner = document.getElementById("broker");
    if (banner) { banner.hidden = !fig.broker_error; setText(banner, fig.broker_error || ""); }
    Object.keys(fig.edges).forEach(function (id) {
      var g = document.getElementById(id);
      var r = fig.edges[id];
      if (g) setText(g.querySelector(".rate"), r === null ? "" : r.toFixed(1) + "/s");
    });
    Object.keys(fig.nodes).forEach(function (name) {
      var n = fig.nodes[name];
      // the Burrow-style status comes from the broker's offsets, the worker's state from its
      // /metrics: a stopped worker shows both (STOP, down)
      var status = n.status || "-";
      var v = document.getElementById("v-node:" + name);
      if (v) {
        v.setAttribute("class", "vertex node " + (n.worker ? "ERR" : (n.status || "")));
        setText(v.querySelector(".figure"),
          status + (n.worker ? " · " + n.worker : "") + " · lag " + fmt(n.lag_records));
      }
      var row = document.getElementById("row-" + name);
      if (!row) return;
      setText(row.querySelector(".status"), status);
      setText(row.querySelector(".worker"), n.worker || "ok");
      setText(row.querySelector(".lag"), fmt(n.lag_records));
      setText(row.querySelector(".lags"), fmt(n.lag_seconds, " s"));
      setText(row.querySelector(".restarts"), fmt(Math.round(n.restarts)));
      var reasons = Object.keys(n.dlq_by_reason).sort().map(function (k) {
        return k + ": " + Math.round(n.dlq_by_reason[k]);
      });
      setText(row.querySelector(".dlq"), reasons.join(", ") || "0");
      var tiers = Object.keys(n.retry_tiers).map(function (k) { return k + ": " + n.retry_tiers[k]; });
      setText(row.querySelector(".tiers"), tiers.join(", ") || "-");
    });
  }
  function tick() {
    fetch(endpoint, { cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (fig) { if (fig) apply(fig); })
      .catch(function () { /* the console is restarting: try again at the next tick */ })
      .finally(function () { setTimeout(tick, 3000); });
  }
  tick();
})();
