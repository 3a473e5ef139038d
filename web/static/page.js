// On a narrow screen (a phone, or a desktop at 200 % zoom) the payment details start
// folded under their "How to pay" heading, so the invoices are on the first screen; one
// tap opens them. Without this script they are simply open.
(function () {
  "use strict";
  var pay = document.querySelector("details.pay");
  if (pay && window.matchMedia && window.matchMedia("(max-width: 44rem)").matches) {
    pay.open = false;
  }
})();
