/*
 * On every page: ask the service worker for the chosen buddy (public info only, or nothing when
 * none is chosen or the owner switched it off for this site) and show it with the widget's own
 * code (embed.js, loaded just before this file into the same isolated world). Custom elements
 * cannot be defined from a content script, so the buddy lives in the shadow root of a plain
 * element. Its close button switches the buddy off for this site.
 */
(function () {
  "use strict";
  var widget = globalThis.bitBuddyWidget;
  if (!widget || window.top !== window) { return; }

  chrome.runtime.sendMessage({ type: "buddyForPage" }).then(function (answer) {
    if (!answer || !answer.ok || !answer.result) { return; }
    var host = document.createElement("div");
    host.setAttribute("data-bitbuddies", "");
    document.documentElement.appendChild(host);
    var shown = widget.mount(host, answer.result, {
      closeLabel: "Hide on this site",
      onClose: function () { chrome.runtime.sendMessage({ type: "offForSite" }); },
    });
    if (!shown) { host.remove(); }
  }, function () { /* the extension was reloaded meanwhile: nothing to show */ });
})();
