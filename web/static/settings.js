// Settings pages, progressive: every page works without this script.
// - The result of a form (its one-time message) takes the focus, so it is read out.
// - "Copy" buttons put a link on the clipboard; the focus stays on the button.
// - The bot page's reply preview follows the wording fields as they are typed.
// - Typing into the invoice picker chooses "one invoice".
// - A running re-issue's progress follows the work without reloading the page.
(function () {
  "use strict";

  function focusResult() {
    var result = document.querySelector("[data-focus]");
    if (result) {
      result.focus();
    }
  }

  function copyText(text, button) {
    // Without the clipboard API: copy from a field made for it, then give the focus back.
    var field = document.createElement("textarea");
    field.value = text;
    field.setAttribute("readonly", "");
    field.className = "visually-hidden";
    document.body.appendChild(field);
    field.select();
    var copied = false;
    try {
      copied = document.execCommand("copy");
    } catch (error) {
      copied = false;
    }
    document.body.removeChild(field);
    button.focus();
    return copied;
  }

  function copyButtons() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-copy-value]"), function (button) {
      var status = button.parentNode.querySelector(".settings-copy-status");
      button.hidden = false;
      button.addEventListener("click", function () {
        var text = button.getAttribute("data-copy-value");
        function done(copied) {
          if (status) {
            status.textContent = copied ? "Copied." : "Could not copy: select the link and copy it.";
          }
        }
        if (navigator.clipboard && navigator.clipboard.writeText) {
          navigator.clipboard.writeText(text).then(
            function () { done(true); },
            function () { done(copyText(text, button)); }
          );
        } else {
          done(copyText(text, button));
        }
      });
    });
  }

  function livePreview() {
    var region = document.querySelector("[data-preview-base]");
    if (!region) {
      return;
    }
    var frame = region.querySelector("[data-mail-frame]");
    var text = region.querySelector("[data-mail-text]");
    var fields = document.querySelectorAll("[data-preview]");
    var timer = null;
    function query(part) {
      var params = new URLSearchParams();
      Array.prototype.forEach.call(fields, function (field) {
        params.set(field.getAttribute("data-preview"), field.value);
      });
      if (part) {
        params.set("part", part);
      }
      return region.getAttribute("data-preview-base") + "?" + params.toString();
    }
    function refresh() {
      if (frame) {
        frame.src = query("");
      }
      if (text) {
        fetch(query("text"), { credentials: "same-origin" })
          .then(function (response) { return response.ok ? response.text() : null; })
          .then(function (body) { if (body !== null) { text.textContent = body; } });
      }
    }
    Array.prototype.forEach.call(fields, function (field) {
      field.addEventListener("input", function () {
        window.clearTimeout(timer);
        timer = window.setTimeout(refresh, 400);
      });
    });
  }

  function followProgress() {
    var progress = document.querySelector("[data-progress][data-running]");
    if (!progress) {
      return;
    }
    function poll() {
      fetch(window.location.pathname, { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (body) {
          if (body === null) {
            return;
          }
          var fresh = new DOMParser().parseFromString(body, "text/html").getElementById(progress.id);
          if (!fresh) {
            return;
          }
          // The status line is kept and only its words change, so it is read out; the
          // rest (the bar, the table, a button to go on) is replaced.
          var said = progress.querySelector("[role=status]");
          var saying = fresh.querySelector("[role=status]");
          Array.prototype.slice.call(progress.children).forEach(function (child) {
            if (child !== said) { progress.removeChild(child); }
          });
          Array.prototype.slice.call(fresh.children).forEach(function (child) {
            if (child !== saying) { progress.appendChild(document.importNode(child, true)); }
          });
          if (said && saying) { said.textContent = saying.textContent.replace(/\s+/g, " ").trim(); }
          if (fresh.hasAttribute("data-running")) {
            window.setTimeout(poll, 1000);
          } else {
            progress.removeAttribute("data-running");
          }
        });
    }
    window.setTimeout(poll, 1000);
  }

  function pickerChoosesItsScope() {
    // Typing an invoice into the picker means "one invoice".
    var picker = document.getElementById("invoice");
    var scope = document.getElementById("scope-invoice");
    if (picker && scope) {
      picker.addEventListener("input", function () { scope.checked = true; });
    }
  }

  focusResult();
  pickerChoosesItsScope();
  copyButtons();
  livePreview();
  followProgress();
})();
