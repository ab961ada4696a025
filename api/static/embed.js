/*
 * BitBuddies widget: a buddy that walks along the bottom of a web page.
 *
 *   <script src="https://HOST/embed.js" data-buddy="SLUG" async></script>
 * or
 *   <script src="https://HOST/embed.js" async></script>
 *   <bit-buddy slug="SLUG"></bit-buddy>
 *
 * A guest on someone else's page: it defines one custom element (<bit-buddy>) and no global
 * name, keeps everything in a shadow root (the host page's CSS cannot reach in, its own cannot
 * leak out), never reads or sets cookies (fetches and media go without credentials), stands
 * still under prefers-reduced-motion, and stops when the tab is hidden. The walk runs as Web
 * Animations on the compositor, so the page's main thread does almost nothing while it walks.
 *
 * The Chrome extension's content script runs this same file in its isolated world, where
 * custom elements cannot be defined: there it hands `mount` to the content script through the
 * isolated world's own global object, which page scripts cannot see.
 */
(function () {
  "use strict";

  var TAG = "bit-buddy";
  var DEFAULT_SIZE = 120;
  var WALK_PX_PER_SECOND = 55;
  var script = document.currentScript;
  var scriptBase = script && script.src ? script.src.replace(/\/embed\.js([?#].*)?$/, "") : "";

  var STYLE = [
    ":host { all: initial !important; }",
    ".buddy { position: absolute; left: 0; bottom: 0; pointer-events: auto; cursor: grab; touch-action: none;",
    "  -webkit-user-select: none; user-select: none; outline: none; will-change: transform; }",
    ".buddy:focus-visible { outline: 2px solid #5b3fa0; outline-offset: 2px; border-radius: 8px; }",
    ".buddy[data-state=dragging] { cursor: grabbing; }",
    ".body { width: 100%; height: 100%; transform-origin: 50% 100%; }",
    ".body.left { transform: scaleX(-1); }",
    ".body video, .body img { display: block; width: 100%; height: 100%; object-fit: contain;",
    "  background: transparent; pointer-events: none; }",
    ".body [hidden] { display: none; }",
    ".close { position: absolute; top: 0; right: 0; width: 18px; height: 18px; padding: 0; margin: 0;",
    "  border: 0; border-radius: 50%; background: rgba(40, 30, 60, .55); color: #fff; font: 13px/18px sans-serif;",
    "  text-align: center; cursor: pointer; opacity: 0; transition: opacity .2s; }",
    ".buddy:hover .close, .buddy:focus-within .close { opacity: 1; }",
    ".bubble { position: absolute; left: 50%; top: -6px; transform: translate(-50%, -100%); padding: 2px 8px;",
    "  border-radius: 12px; background: #fff; color: #3b2a5c; font: bold 14px/1.4 sans-serif;",
    "  box-shadow: 0 1px 4px rgba(0, 0, 0, .25); display: none; white-space: nowrap; }",
    ".buddy[data-state=waving] .bubble { display: block; }",
    "@keyframes bitbuddy-hop { 0% { transform: translateY(0) rotate(0); } 20% { transform: translateY(-30%) rotate(-8deg); }",
    "  45% { transform: translateY(0) rotate(8deg); } 65% { transform: translateY(-15%) rotate(-6deg); }",
    "  100% { transform: translateY(0) rotate(0); } }",
    ".wave { animation: bitbuddy-hop 1.1s ease-out; }",
    "@media (prefers-reduced-motion: reduce) { .wave { animation: none; } .close { transition: none; } }"
  ].join("\n");

  /** Transparent VP9 where the browser draws its alpha: Safari (all WebKit) plays VP9 but draws
   *  the alpha black, so it gets the animated WebP instead, as does anything without VP9. */
  function playsAlphaWebm() {
    var ua = navigator.userAgent;
    var webkitOnly = /AppleWebKit/.test(ua) && !/Chrome|Chromium|Edg|Firefox|OPR/.test(ua);
    var probe = document.createElement("video");
    return !webkitOnly && !/iPhone|iPad|iPod/.test(ua) && !!(probe.canPlayType && probe.canPlayType('video/webm; codecs="vp9"'));
  }

  function lockHostStyle(host) {
    // Inline !important beats any !important rule of the host page's style sheets: the element
    // stays a zero-size anchor fixed to the viewport's bottom-left corner, whatever the page says.
    host.setAttribute("style", [
      "all:initial", "position:fixed", "left:0", "bottom:0", "width:0", "height:0", "margin:0", "padding:0",
      "border:0", "display:block", "overflow:visible", "z-index:2147483646", "pointer-events:none",
      "transform:none", "filter:none", "contain:none", "opacity:1", "visibility:visible"
    ].join(" !important;") + " !important");
  }

  function media(url, isVideo) {
    var element = document.createElement(isVideo ? "video" : "img");
    element.crossOrigin = "anonymous"; // CORS without credentials: no cookies go with it
    if (isVideo) {
      element.muted = true;
      element.loop = true;
      element.playsInline = true;
      element.disablePictureInPicture = true;
      element.disableRemotePlayback = true;
      element.preload = "auto";
    } else {
      element.alt = "";
      element.decoding = "async";
    }
    element.src = url;
    return element;
  }

  /**
   * Show the buddy described by `info` (the server's /b/{slug}/buddy.json) inside `host`, which
   * gets a shadow root. Options: size (px), onClose (called when its close button is used),
   * closeLabel. Returns {destroy(), element}.
   */
  function mount(host, info, options) {
    options = options || {};
    var assets = info.assets || {};
    var size = Math.max(48, Math.min(320, Number(options.size) || DEFAULT_SIZE));
    var useVideo = playsAlphaWebm() && !!assets.webm;
    var idleUrl = useVideo ? assets.webm : (assets.webp || assets.gif || assets.poster);
    var walkUrl = useVideo ? assets.walk_webm : assets.walk_webp;
    if (!idleUrl) { return null; }

    lockHostStyle(host);
    var root = host.shadowRoot || host.attachShadow({ mode: "open" });
    root.innerHTML = "";
    var style = document.createElement("style");
    style.textContent = STYLE;
    var buddy = document.createElement("div");
    buddy.className = "buddy";
    buddy.setAttribute("role", "img");
    buddy.setAttribute("aria-label", info.title || "A Bit Buddy");
    buddy.tabIndex = 0;
    buddy.style.width = buddy.style.height = size + "px";
    var body = document.createElement("div");
    body.className = "body";
    var idle = media(idleUrl, useVideo);
    var walk = walkUrl ? media(walkUrl, useVideo) : null;
    body.appendChild(idle);
    if (walk) { walk.hidden = true; body.appendChild(walk); }
    var bubble = document.createElement("span");
    bubble.className = "bubble";
    bubble.setAttribute("aria-hidden", "true");
    bubble.textContent = "Hi!"; // words, not an emoji: not every system has a font for it
    var close = document.createElement("button");
    close.type = "button";
    close.className = "close";
    close.setAttribute("aria-label", options.closeLabel || "Close");
    close.title = options.closeLabel || "Close";
    close.textContent = "\u00D7";
    buddy.appendChild(body);
    buddy.appendChild(bubble);
    buddy.appendChild(close);
    root.appendChild(style);
    root.appendChild(buddy);

    var reduced = window.matchMedia ? window.matchMedia("(prefers-reduced-motion: reduce)") : { matches: false };
    var x = 0;            // left edge, px from the viewport's left
    var y = 0;            // lift above the bottom edge (only while dragged or falling)
    var dir = Math.random() < 0.5 ? 1 : -1;
    var motion = null;    // the running Web Animation, with where it goes
    var timer = null;
    var drag = null;
    var destroyed = false;

    function maxX() { return Math.max(0, document.documentElement.clientWidth - size); }
    function place() { buddy.style.transform = "translate(" + x + "px," + (-y) + "px)"; }
    function setState(state) { buddy.setAttribute("data-state", state); }
    function face() { body.classList.toggle("left", dir < 0); }

    function show(walking) {
      var active = walking && walk ? walk : idle;
      var other = active === idle ? walk : idle;
      if (other) { other.hidden = true; if (useVideo) { other.pause(); } }
      active.hidden = false;
      if (useVideo && !document.hidden) {
        var playing = active.play();
        if (playing && playing.catch) { playing.catch(function () {}); }
      }
    }

    /** Stop whatever moves, keeping the buddy where it is now. */
    function halt() {
      clearTimeout(timer);
      timer = null;
      if (motion) {
        var timing = motion.animation.effect.getComputedTiming();
        var progress = timing.progress == null ? 1 : timing.progress;
        x = motion.from + (motion.to - motion.from) * progress;
        y = motion.fromY + (motion.toY - motion.fromY) * progress;
        motion.animation.cancel();
        motion = null;
        place();
      }
    }

    function animateTo(toX, toY, ms, easing, then) {
      var from = { from: x, fromY: y, to: toX, toY: toY };
      from.animation = buddy.animate(
        [{ transform: "translate(" + x + "px," + (-y) + "px)" }, { transform: "translate(" + toX + "px," + (-toY) + "px)" }],
        { duration: Math.max(1, ms), easing: easing }
      );
      motion = from;
      from.animation.onfinish = function () {
        if (motion !== from) { return; }
        motion = null;
        x = toX;
        y = toY;
        place();
        then();
      };
    }

    function stand() {
      halt();
      setState("still");
      show(false);
    }

    /** The next thing to do: walk a stretch (turning at the edges) or idle a moment. */
    function next() {
      if (destroyed || document.hidden || drag) { return; }
      if (reduced.matches) { stand(); return; }
      halt();
      var limit = maxX();
      if ((dir > 0 && x >= limit - 1) || (dir < 0 && x <= 1)) { dir = -dir; }
      face();
      if (buddy.getAttribute("data-state") === "walking" && Math.random() < 0.35) {
        setState("idle");
        show(false);
        timer = setTimeout(next, 1500 + Math.random() * 2500);
        return;
      }
      var room = dir > 0 ? limit - x : x;
      var stretch = Math.min(room, Math.max(size, Math.random() * limit * 0.7));
      var toX = x + dir * stretch;
      setState("walking");
      show(true);
      animateTo(toX, 0, (stretch / WALK_PX_PER_SECOND) * 1000, "linear", next);
    }

    function wave() {
      halt();
      setState("waving");
      show(false);
      body.classList.remove("wave");
      void body.offsetWidth; // restart the hop when clicked again mid-wave
      body.classList.add("wave");
      timer = setTimeout(function () {
        body.classList.remove("wave");
        if (reduced.matches) { setState("still"); } else { setState("idle"); next(); }
      }, 1600);
    }

    function onPointerDown(event) {
      if (event.button !== 0 || event.target === close) { return; }
      drag = { startX: event.clientX, startY: event.clientY, dx: event.clientX - x, moved: false };
      buddy.setPointerCapture(event.pointerId);
    }

    function onPointerMove(event) {
      if (!drag) { return; }
      if (!drag.moved && Math.abs(event.clientX - drag.startX) + Math.abs(event.clientY - drag.startY) < 6) { return; }
      if (!drag.moved) { drag.moved = true; halt(); setState("dragging"); show(false); }
      var viewportHeight = document.documentElement.clientHeight;
      x = Math.max(0, Math.min(maxX(), event.clientX - drag.dx));
      y = Math.max(0, Math.min(viewportHeight - size, viewportHeight - event.clientY - size / 2));
      place();
    }

    function onPointerUp(event) {
      if (!drag) { return; }
      var moved = drag.moved;
      drag = null;
      if (buddy.hasPointerCapture(event.pointerId)) { buddy.releasePointerCapture(event.pointerId); }
      if (!moved) { wave(); return; }
      if (reduced.matches) { y = 0; place(); stand(); return; }
      setState("falling");
      animateTo(x, 0, 250 + y, "cubic-bezier(.5,0,1,1)", next); // falls back to the bottom edge
    }

    function onKey(event) {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); wave(); }
    }

    function onVisibility() {
      if (document.hidden) {
        halt();
        if (useVideo) { idle.pause(); if (walk) { walk.pause(); } }
      } else {
        next();
        if (reduced.matches) { show(false); }
      }
    }

    function onResize() {
      halt();
      x = Math.min(x, maxX());
      place();
      next();
    }

    function onMotionPreference() { if (reduced.matches) { stand(); } else { next(); } }

    function destroy(keepHost) {
      if (destroyed) { return; }
      destroyed = true;
      halt();
      document.removeEventListener("visibilitychange", onVisibility);
      window.removeEventListener("resize", onResize);
      if (reduced.removeEventListener) { reduced.removeEventListener("change", onMotionPreference); }
      [idle, walk].forEach(function (element) {
        if (!element) { return; }
        if (useVideo) { element.pause(); }
        element.removeAttribute("src"); // lets the browser drop the decoder and the buffered media
        if (useVideo) { element.load(); }
      });
      root.innerHTML = "";
      if (!keepHost && host.parentNode) { host.parentNode.removeChild(host); }
    }

    function gone() { destroy(false); } // a buddy deleted meanwhile: disappear quietly

    close.addEventListener("click", function (event) {
      event.stopPropagation();
      if (options.onClose) { options.onClose(); }
      destroy(false);
    });
    buddy.addEventListener("pointerdown", onPointerDown);
    buddy.addEventListener("pointermove", onPointerMove);
    buddy.addEventListener("pointerup", onPointerUp);
    buddy.addEventListener("pointercancel", onPointerUp);
    buddy.addEventListener("keydown", onKey);
    idle.addEventListener("error", gone);
    if (walk) { walk.addEventListener("error", function () { walk = null; show(false); }); }
    document.addEventListener("visibilitychange", onVisibility);
    window.addEventListener("resize", onResize);
    if (reduced.addEventListener) { reduced.addEventListener("change", onMotionPreference); }

    face();
    x = reduced.matches ? maxX() - 16 : Math.round(Math.random() * maxX());
    x = Math.max(0, x);
    place();
    setState(reduced.matches ? "still" : "walking");
    show(false);
    next();
    return { element: buddy, destroy: destroy };
  }

  function fetchInfo(server, slug) {
    var url = server.replace(/\/$/, "") + "/b/" + encodeURIComponent(slug) + "/buddy.json";
    return fetch(url, { credentials: "omit", mode: "cors", cache: "default" }).then(function (response) {
      return response.ok ? response.json() : null;
    });
  }

  var inExtension = typeof chrome !== "undefined" && !!(chrome.runtime && chrome.runtime.id);
  if (inExtension || !window.customElements) {
    // An extension's isolated world: its own global object, invisible to the page's scripts.
    globalThis.bitBuddyWidget = { mount: mount };
    return;
  }

  // Per element: "loading" or its mounted buddy. Kept here rather than as properties on the
  // element, so the page sees nothing of the widget's state.
  var mounted = new WeakMap();

  if (!window.customElements.get(TAG)) {
    window.customElements.define(TAG, class extends HTMLElement {
      connectedCallback() {
        var element = this;
        if (mounted.has(element)) { return; }
        var slug = element.getAttribute("slug");
        var server = element.getAttribute("server") || scriptBase;
        if (!slug || !server) { element.remove(); return; }
        lockHostStyle(element);
        mounted.set(element, "loading");
        fetchInfo(server, slug).then(function (info) {
          mounted.delete(element);
          if (!info) { element.remove(); return; } // unknown, private or deleted: no trace left
          if (element.isConnected) {
            mounted.set(element, mount(element, info, { size: element.getAttribute("size") }));
          }
        }, function () { mounted.delete(element); element.remove(); });
      }

      disconnectedCallback() {
        var buddy = mounted.get(this);
        if (buddy && buddy !== "loading") { buddy.destroy(true); mounted.delete(this); }
      }
    });
  }

  if (script && script.getAttribute("data-buddy")) {
    var place = function () {
      var element = document.createElement(TAG);
      element.setAttribute("slug", script.getAttribute("data-buddy"));
      element.setAttribute("server", scriptBase);
      if (script.getAttribute("data-size")) { element.setAttribute("size", script.getAttribute("data-size")); }
      document.body.appendChild(element);
    };
    if (document.body) { place(); } else { document.addEventListener("DOMContentLoaded", place); }
  }
})();
