// Pages that wait for something to happen elsewhere (Stripe's webhook, the sticker DAG) reload
// themselves every data-refresh-seconds until the server renders them without the attribute.
(function () {
  "use strict";
  var holder = document.querySelector("[data-refresh-seconds]");
  if (!holder) return;
  var seconds = parseFloat(holder.getAttribute("data-refresh-seconds")) || 5;
  setTimeout(function () { window.location.reload(); }, seconds * 1000);
})();
