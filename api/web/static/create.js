// The create form: drag and drop a photo onto the drop zone, preview it before uploading, and
// catch the obvious mistakes (not an image, too big) before sending. The server checks again.
(function () {
  "use strict";
  var form = document.getElementById("create-form");
  if (!form) return;
  var input = document.getElementById("image");
  var zone = document.getElementById("dropzone");
  var preview = document.getElementById("preview");
  var text = document.getElementById("dropzone-text");
  var error = document.getElementById("image-error");
  var maxBytes = parseInt(zone.getAttribute("data-max-bytes"), 10) || 0;
  var accepted = ["image/jpeg", "image/png", "image/webp"];
  var objectUrl = null;

  function showError(message) {
    error.textContent = message;
    error.hidden = !message;
    if (message) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
  }

  function show(file) {
    if (objectUrl) URL.revokeObjectURL(objectUrl);
    objectUrl = null;
    preview.hidden = true;
    if (!file) { text.hidden = false; showError(""); return; }
    if (accepted.indexOf(file.type) === -1) {
      showError("That file is not a JPEG, PNG or WebP photo.");
    } else if (maxBytes && file.size > maxBytes) {
      showError("That photo is too big: the limit is " + Math.round(maxBytes / 1048576) + " MiB.");
    } else {
      showError("");
    }
    objectUrl = URL.createObjectURL(file);
    preview.src = objectUrl;
    preview.hidden = false;
    text.hidden = true;
  }

  input.addEventListener("change", function () { show(input.files[0]); });

  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function () { zone.classList.remove("dragging"); });
  });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    var files = event.dataTransfer && event.dataTransfer.files;
    if (!files || !files.length) return;
    var transfer = new DataTransfer();
    transfer.items.add(files[0]);
    input.files = transfer.files; // the form then sends the dropped file like a chosen one
    show(files[0]);
  });

  form.addEventListener("submit", function (event) {
    if (!error.hidden) { event.preventDefault(); input.focus(); return; }
    var button = form.querySelector("button[type=submit]");
    button.disabled = true;
    button.textContent = "Uploading…";
  });
})();
