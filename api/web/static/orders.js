// The order form: keep the sheet preview (rendered by the server with the PDF's own code) and
// the price in step with the chosen buddies, sheet size and copies.
(function () {
  "use strict";
  var form = document.getElementById("order-form");
  if (!form) return;
  var preview = document.getElementById("sheet-preview");
  var note = document.getElementById("preview-note");
  var price = document.getElementById("price");
  var capacities = JSON.parse(form.getAttribute("data-capacities"));
  var unit = parseInt(form.getAttribute("data-price"), 10);
  var currency = form.getAttribute("data-currency").toUpperCase();
  var timer = null;

  function state() {
    var chosen = Array.prototype.map.call(form.querySelectorAll('input[name="buddy"]:checked'), function (box) { return box.value; });
    var copies = Math.max(1, Math.min(20, parseInt(form.copies.value, 10) || 1));
    return { chosen: chosen, size: form.sheet_size.value, copies: copies };
  }

  function refresh() {
    var s = state();
    if (!s.chosen.length) {
      price.textContent = "";
      preview.src = "/static/empty-sheet.svg";
      note.textContent = "Choose buddies to see the sheet.";
      return;
    }
    var sheets = Math.ceil(s.chosen.length * s.copies / (capacities[s.size] || 1));
    price.textContent = sheets + " sheet" + (sheets === 1 ? "" : "s") + " · " +
      new Intl.NumberFormat(undefined, { style: "currency", currency: currency }).format(sheets * unit / 100);
    var query = s.chosen.map(function (id) { return "buddy=" + encodeURIComponent(id); }).join("&") +
      "&size=" + encodeURIComponent(s.size) + "&copies=" + s.copies;
    note.textContent = "Rendering the preview…";
    preview.src = preview.getAttribute("data-src") + "?" + query;
  }

  preview.addEventListener("load", function () {
    if (preview.src.indexOf("preview.png") !== -1) note.textContent = "The first sheet, as it will print.";
  });
  form.addEventListener("change", function () { clearTimeout(timer); timer = setTimeout(refresh, 300); });
  form.copies.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(refresh, 500); });
  refresh();
})();

// A message from the server about a field goes once the person changes that field.
(function () {
  "use strict";
  var form = document.getElementById("order-form");
  if (!form) return;
  form.addEventListener("input", function (event) {
    var field = event.target;
    if (field.getAttribute("aria-invalid") !== "true") return;
    field.removeAttribute("aria-invalid");
    var message = document.getElementById(field.id + "-error");
    if (message) message.hidden = true;
  });
})();
