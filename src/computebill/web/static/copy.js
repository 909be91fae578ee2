// Copy buttons: <button data-copy="ID"> copies the text of the element with that id, and says so
// in the [data-copy-feedback] status next to it. Delegated, so lists swapped in by htmx work too.
(function () {
  function say(button, message) {
    const feedback = button.parentElement && button.parentElement.querySelector("[data-copy-feedback]");
    if (!feedback) return;
    feedback.textContent = message;
    clearTimeout(feedback.copyTimer);
    feedback.copyTimer = setTimeout(function () { feedback.textContent = ""; }, 2500);
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
      say(button, "Copied");
    } catch (error) {
      // No clipboard here (plain http, or permission refused): select it for Ctrl+C instead.
      selectText(source);
      say(button, "Selected: press Ctrl+C to copy");
    }
  });
})();
