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
