// The configurator's hours field: the server checks each change and its answer puts the error
// beside the field (an out-of-band swap of #hours-error, which leaves the field being typed in
// alone). This marks the field invalid, described by that error, while there is one; an Add to
// cart refused for it moves focus to it, to fix.
(function () {
  document.addEventListener("htmx:afterSwap", function (event) {
    const field = document.getElementById("hours");
    const error = document.getElementById("hours-error");
    if (!field || !error) return;
    const invalid = error.textContent.trim() !== "";
    if (invalid) {
      field.setAttribute("aria-invalid", "true");
      field.setAttribute("aria-describedby", "hours-error");
    } else {
      field.removeAttribute("aria-invalid");
      field.removeAttribute("aria-describedby");
    }
    field.classList.toggle("field-error", invalid);
    if (invalid && event.detail.target.id === "add-to-cart-result") field.focus();
  });
})();
