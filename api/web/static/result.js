// The result: play the transparent WebM (VP9 with alpha) over a background the person picks;
// where VP9 alpha does not play (Safari draws it black), show the animated WebP / GIF instead.
// Copy buttons put the share link and the embed snippet on the clipboard.
(function () {
  "use strict";
  var stage = document.getElementById("stage");
  var video = document.getElementById("buddy-video");
  var fallback = document.getElementById("buddy-fallback");
  var photo = document.getElementById("bg-photo");

  if (video && fallback) {
    var canPlay = video.canPlayType('video/webm; codecs="vp9"');
    var apple = /^((?!chrome|android).)*safari/i.test(navigator.userAgent);
    function useFallback() { video.hidden = true; video.pause(); fallback.hidden = false; }
    if (!canPlay || apple) useFallback();
    video.addEventListener("error", useFallback, true);
  }

  document.querySelectorAll('input[name="background"]').forEach(function (radio) {
    radio.addEventListener("change", function () {
      stage.className = "stage bg-" + radio.value;
      if (photo) photo.hidden = radio.value !== "photo";
    });
  });

  // Formats encoded after the buddy was published (WebP, GIF) show as "preparing" until the
  // generation lists them as ready; then they turn into download links where they stand.
  var downloads = document.querySelector(".downloads[data-status-url]");
  if (downloads) {
    var polls = 0;
    function checkFormats() {
      fetch(downloads.getAttribute("data-status-url"), { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (generation) {
          if (!generation) return;
          var ready = generation.formats_ready || [];
          var pending = generation.formats_pending || [];
          downloads.querySelectorAll("[data-pending-format]").forEach(function (item) {
            var kind = item.getAttribute("data-pending-format");
            if (ready.indexOf(kind) >= 0) {
              var link = document.createElement("a");
              link.className = "button secondary small";
              link.href = item.getAttribute("data-href");
              link.setAttribute("download", item.getAttribute("data-download"));
              link.textContent = item.getAttribute("data-label");
              item.replaceChildren(link);
              item.removeAttribute("data-pending-format");
            } else if (pending.indexOf(kind) < 0) {
              item.remove();  // given up on: the buddy stays, without this format
            }
          });
          if (fallback && generation.assets) {
            var img = fallback.querySelector("img");
            if (generation.assets.gif && img && img.src.indexOf("/poster.png") >= 0) img.src = generation.assets.gif;
          }
        })
        .catch(function () {})
        .then(function () {
          polls += 1;
          if (downloads.querySelector("[data-pending-format]") && polls < 150) setTimeout(checkFormats, 2000);
        });
    }
    setTimeout(checkFormats, 1500);
  }

  var copied = document.getElementById("copied");
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var field = document.getElementById(button.getAttribute("data-copy"));
      function done() { copied.textContent = "Copied to the clipboard."; }
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(done, function () { field.select(); document.execCommand("copy"); done(); });
      } else {
        field.select();
        document.execCommand("copy");
        done();
      }
    });
  });
})();
