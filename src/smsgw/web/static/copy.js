// Copy buttons: a button with data-copy="ID" copies the text of the field ID and says so in
// the element ID-said. Without JavaScript the buttons stay hidden and the field is copied
// by hand.
(function () {
  "use strict";

  // The outcome is said next to the button (a polite live region), so the button keeps
  // its name for people using a screen reader.
  function say(button, text) {
    var said = document.getElementById(button.getAttribute("data-copy") + "-said");
    if (said) {
      said.textContent = text;
    }
  }

  function copy(button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    if (!field) {
      return;
    }
    field.focus();
    field.select();
    var done = function () { say(button, "Copied"); };
    var fallback = function () {
      var copiedByHand = false;
      try {
        copiedByHand = document.execCommand("copy");
      } catch (ignored) { /* the text stays selected for the user to copy */ }
      say(button, copiedByHand ? "Copied" : "Selected: press Ctrl+C to copy");
    };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(field.value).then(done, fallback);
    } else {
      fallback();
    }
  }

  var buttons = document.querySelectorAll("[data-copy]");
  Array.prototype.forEach.call(buttons, function (button) {
    button.hidden = false;
    button.addEventListener("click", function () { copy(button); });
  });
}());
