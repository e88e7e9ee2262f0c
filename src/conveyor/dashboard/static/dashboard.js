// Conveyor dashboard: live refresh of counts and job lists, plus a few conveniences.
// Refreshes only while the tab is visible, so an unwatched dashboard costs Redis nothing.
(function () {
  "use strict";
  var every = Number(document.querySelector('meta[name="conveyor-refresh-ms"]').content) || 5000;
  var status = document.querySelector("[data-live-status]");
  var timer = null;
  var ticks = 0;

  function age(seconds) {
    if (seconds === null || seconds === undefined) return "\u2014";
    var units = [["d", 86400], ["h", 3600], ["m", 60]];
    for (var i = 0; i < units.length; i++) {
      if (seconds >= units[i][1]) return Math.floor(seconds / units[i][1]) + units[i][0];
    }
    return Math.floor(seconds) + "s";
  }

  function lookup(object, path) {
    return path.split(".").reduce(function (value, key) {
      return value === null || value === undefined ? undefined : value[key];
    }, object);
  }

  function show(cell, value) {
    var format = cell.getAttribute("data-format");
    if (format === "paused") {
      var pill = document.createElement("span");
      pill.className = "pill " + (value ? "warn" : "ok");
      pill.textContent = value ? "paused" : "running";
      cell.replaceChildren(pill);
    } else {
      cell.textContent = format === "age" ? age(value) : String(value);
    }
  }

  function apply(scope, summary) {
    scope.querySelectorAll("[data-field]").forEach(function (cell) {
      var value = lookup(summary, cell.getAttribute("data-field"));
      if (value !== undefined) show(cell, value);
    });
  }

  function get(url, as) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: as } }).then(function (r) {
      if (!r.ok) throw new Error(r.status);
      return as === "application/json" ? r.json() : r.text();
    });
  }

  function refreshJson(element) {
    return get(element.getAttribute("data-live-json"), "application/json").then(function (data) {
      var queues = data.queues || [data];
      queues.forEach(function (summary) {
        var rows = element.hasAttribute("data-queue") ? [element] :
          element.querySelectorAll('[data-queue="' + CSS.escape(summary.queue) + '"]');
        rows.forEach(function (row) { apply(row, summary); });
        if (element.hasAttribute("data-queue")) {
          document.querySelectorAll("nav.tabs, .title-row").forEach(function (n) { apply(n, summary); });
        }
      });
    });
  }

  function refreshFragment(element) {
    if (element.hasAttribute("data-hold-if-checked") && element.querySelector("input:checked")) {
      return Promise.resolve();
    }
    return get(element.getAttribute("data-fragment"), "text/html").then(function (html) {
      element.innerHTML = html;  // rendered and escaped by the server
    });
  }

  function refresh() {
    ticks += 1;
    var work = [];
    document.querySelectorAll("[data-live-json]").forEach(function (el) { work.push(refreshJson(el)); });
    document.querySelectorAll("[data-fragment]").forEach(function (el) {
      var n = Math.max(1, Math.round((Number(el.getAttribute("data-every")) || every / 1000) * 1000 / every));
      if (ticks % n === 0) work.push(refreshFragment(el));
    });
    Promise.all(work).then(function () {
      if (status) { status.className = "live"; status.textContent = "live"; }
    }, function () {
      if (status) { status.className = "live error"; status.textContent = "refresh failed"; }
    });
  }

  function start() {
    if (timer === null) timer = setInterval(refresh, every);
    if (status) { status.className = "live"; status.textContent = "live"; }
  }

  function stop() {
    if (timer !== null) { clearInterval(timer); timer = null; }
    if (status) { status.className = "live paused"; status.textContent = "paused"; }
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") { refresh(); start(); } else { stop(); }
  });
  if (document.visibilityState === "visible") start(); else stop();

  // Buttons that destroy something ask first.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) event.preventDefault();
  });

  // "Select all on this page".
  document.addEventListener("change", function (event) {
    if (!event.target.matches("[data-select-all]")) return;
    var form = event.target.closest("form");
    form.querySelectorAll('input[name="ids"]').forEach(function (box) { box.checked = event.target.checked; });
  });
})();
