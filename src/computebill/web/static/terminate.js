// The dashboard's Terminate confirmation: htmx brings the panel into #terminate-panel; this
// moves focus to it, and "Keep it running" closes it (focus back on that row's Terminate button)
// instead of reloading the page, which is what the link does without JavaScript.
(function () {
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target.id !== "terminate-panel") return;
    const title = event.detail.target.querySelector("[data-terminate-title]");
    if (title) title.focus();
  });

  document.addEventListener("click", function (event) {
    const keep = event.target.closest("#terminate-panel [data-keep-running]");
    if (!keep) return;
    event.preventDefault();
    document.getElementById("terminate-panel").replaceChildren();
    const button = document.getElementById(keep.dataset.keepRunning);
    if (button) button.focus();
  });
})();
