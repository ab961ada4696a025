// Live progress of a generation from its Server-Sent Events stream. The browser's EventSource
// sends the session cookie and, when it reconnects, Last-Event-ID, so nothing is missed; a page
// opened late (or reloaded) receives the whole history first. Once the generation has ended the
// page reloads into the server-rendered result or failure.
(function () {
  "use strict";
  var root = document.getElementById("buddy");
  if (!root) return;
  var headline = document.getElementById("progress-headline");
  var bar = document.getElementById("progress-bar");
  var percentText = document.getElementById("progress-percent");
  var etaText = document.getElementById("progress-eta");
  var queueText = document.getElementById("progress-queue");
  var failed = document.getElementById("progress-failed");
  var started = {};
  var etaAt = null;
  var etaSeconds = null;

  function item(stage) { return document.querySelector('#stages li[data-stage="' + stage + '"]'); }
  function label(stage) { var li = item(stage); return li ? li.querySelector(".stage-label").textContent : stage; }

  function seconds(value) {
    if (value < 60) return value.toFixed(1) + " s";
    return Math.floor(value / 60) + " min " + Math.round(value % 60) + " s";
  }

  function setState(stage, state, note) {
    var li = item(stage);
    if (!li) return;
    li.className = state + (li.hasAttribute("data-optional") ? " optional used" : "");
    li.querySelector(".stage-state").textContent = state === "done" ? "done" : state === "active" ? "in progress" : "waiting";
    if (note !== undefined) li.querySelector(".stage-time").textContent = note;
  }

  function setPercent(value) {
    if (value === undefined || value === null) return;
    var p = Math.max(0, Math.min(100, Math.round(value)));
    bar.value = p;
    bar.textContent = p + " %";
    percentText.textContent = p + " %";
  }

  function drawEta() {
    if (etaSeconds === null || etaAt === null) { etaText.textContent = ""; return; }
    var left = Math.max(0, etaSeconds - (Date.now() - etaAt) / 1000);
    etaText.textContent = "· about " + seconds(Math.ceil(left)).replace(".0 s", " s") + " left";
  }
  setInterval(drawEta, 1000);

  function update(type, data) {
    if (data.percent !== undefined) setPercent(data.percent);
    if (data.eta_seconds !== undefined) {
      etaSeconds = data.eta_seconds;
      etaAt = Date.now();
      drawEta();
    }
    if (type === "stage_started" && data.stage) {
      started[data.stage] = data.at ? Date.parse(data.at) : Date.now();
      setState(data.stage, "active", "");
      headline.textContent = label(data.stage) + "…";
      queueText.textContent = "";
    } else if (type === "stage_finished" && data.stage) {
      var took = typeof data.duration_seconds === "number" ? data.duration_seconds : null;
      setState(data.stage, "done", took === null ? "" : seconds(took));
      headline.textContent = label(data.stage) + ": done. Next step coming up…";
    } else if (type === "queue_position") {
      queueText.textContent = data.position === null || data.position === undefined ? "" : "· queue position " + data.position;
    } else if (type === "retry") {
      headline.textContent = "A hiccup; trying again…";
    } else if (type === "succeeded") {
      setPercent(100);
      headline.textContent = "Done! Here it comes…";
    } else if (type === "failed") {
      failed.hidden = false;
      failed.textContent = (data.error || "It could not be made.") + (data.refunded ? " Your token was refunded." : "");
    }
  }

  var source = new EventSource(root.getAttribute("data-events-url"));
  ["stage_started", "stage_finished", "queue_position", "retry", "refund"].forEach(function (type) {
    source.addEventListener(type, function (event) { update(type, JSON.parse(event.data)); });
  });
  ["succeeded", "failed"].forEach(function (type) {
    source.addEventListener(type, function (event) {
      update(type, JSON.parse(event.data));
      source.close();
      setTimeout(function () { window.location.reload(); }, type === "succeeded" ? 600 : 1500);
    });
  });
  source.addEventListener("error", function () {
    if (source.readyState === EventSource.CONNECTING) headline.textContent = "Reconnecting…";
  });
  source.addEventListener("open", function () {
    if (headline.textContent === "Reconnecting…") headline.textContent = "Back online…";
  });
})();
