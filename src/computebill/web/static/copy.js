// Copy buttons: <button data-copy="ID"> copies the text of the element with that id, and says so
// on the button itself (which keeps its width, so nothing around it moves) and, for screen
// readers, in the [data-copy-feedback] status next to it. Delegated, so lists swapped in by htmx
// work too.
(function () {
  function say(button, label, message) {
    const feedback = button.parentElement && button.parentElement.querySelector("[data-copy-feedback]");
    if (feedback) feedback.textContent = message;
    if (!button.dataset.label) button.dataset.label = button.textContent;
    button.textContent = label;
    clearTimeout(button.copyTimer);
    button.copyTimer = setTimeout(function () {
      button.textContent = button.dataset.label;
      if (feedback) feedback.textContent = "";
    }, 2500);
  }

  function selectText(element) {
    const range = document.createRange();
    range.selectNodeContents(element);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  document.addEventListener("click", async function (event) {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    try {
      await navigator.clipboard.writeText(source.textContent.trim());
      say(button, "Copied", "Copied");
    } catch (error) {
      // No clipboard here (plain http, or permission refused): select it for Ctrl+C instead.
      selectText(source);
      say(button, "Press Ctrl+C", "Selected: press Ctrl+C to copy");
    }
  });
})();
