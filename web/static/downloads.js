// Busy state for PDF downloads. Building a merged PDF can take a while; when a download
// link is followed, its label changes to "Preparing your PDF…" and a live region says so.
// The server sets the "pdf_ready" cookie on every PDF it sends: once it appears, the file
// is on its way and the link is restored. Without this script the links work as is.
(function () {
  "use strict";
  var COOKIE = "pdf_ready";
  var POLL_MS = 400;
  var GIVE_UP_MS = 180000;
  var status = document.getElementById("download-status");

  function cookieSet() {
    return document.cookie.split(";").some(function (part) {
      return part.trim().indexOf(COOKIE + "=") === 0;
    });
  }

  function clearCookie() {
    document.cookie = COOKIE + "=; Max-Age=0; Path=/; SameSite=Strict";
  }

  function announce(text) {
    if (status) {
      status.textContent = text;
    }
  }

  function restore(link, label) {
    link.replaceChildren.apply(link, label);
    link.removeAttribute("aria-disabled");
    link.removeAttribute("data-busy");
  }

  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a[data-busy-text]") : null;
    if (!link || event.defaultPrevented || event.button !== 0 ||
        event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
      return;
    }
    if (link.hasAttribute("data-busy")) {
      event.preventDefault();  // one request at a time per link
      return;
    }
    var label = Array.prototype.slice.call(link.childNodes);
    clearCookie();
    link.setAttribute("data-busy", "");
    link.setAttribute("aria-disabled", "true");
    link.textContent = link.getAttribute("data-busy-text");
    announce("Preparing your PDF… this can take a little while.");
    var started = Date.now();
    var timer = window.setInterval(function () {
      if (cookieSet()) {
        window.clearInterval(timer);
        clearCookie();
        restore(link, label);
        announce("Your PDF is downloading.");
      } else if (Date.now() - started > GIVE_UP_MS) {
        window.clearInterval(timer);
        restore(link, label);
        announce("");
      }
    }, POLL_MS);
  });
})();
