// Settings pages, progressive: every page works without this script.
// - "Copy" buttons put a link on the clipboard (the link stays plain selectable text).
// - The bot page's reply preview follows the wording fields as they are typed.
(function () {
  "use strict";

  function copyButtons() {
    var buttons = document.querySelectorAll("[data-copy-target]");
    Array.prototype.forEach.call(buttons, function (button) {
      var source = document.getElementById(button.getAttribute("data-copy-target"));
      var status = button.parentNode.querySelector(".settings-copy-status");
      if (!source) {
        return;
      }
      button.hidden = false;
      source.addEventListener("focus", function () { source.select(); });
      button.addEventListener("click", function () {
        function done(text) {
          if (status) { status.textContent = text; }
        }
        source.select();
        if (navigator.clipboard && navigator.clipboard.writeText) {
          navigator.clipboard.writeText(source.value).then(
            function () { done("Copied."); },
            function () { done("Press Ctrl+C (or ⌘C) to copy the selected link."); }
          );
        } else {
          done("Press Ctrl+C (or ⌘C) to copy the selected link.");
        }
      });
    });
  }

  function livePreview() {
    // Each wording field fills its paragraph of the preview; empty means the default.
    Array.prototype.forEach.call(document.querySelectorAll("[data-preview]"), function (field) {
      var part = document.querySelector('[data-part="' + field.getAttribute("data-preview") + '"]');
      if (!part) {
        return;
      }
      field.addEventListener("input", function () {
        part.textContent = field.value.trim() || part.getAttribute("data-default");
      });
    });
  }

  copyButtons();
  livePreview();
})();
