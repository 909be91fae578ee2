// The configurator's hours field: the server checks each change and its answer puts the error
// beside the field (an out-of-band swap of #hours-error, which leaves the field being typed in
// alone). This marks the field invalid, described by that error, while there is one.
(function () {
  document.addEventListener("htmx:afterSwap", function () {
    const field = document.getElementById("hours");
    const error = document.getElementById("hours-error");
    if (!field || !error) return;
    if (error.textContent.trim()) {
      field.setAttribute("aria-invalid", "true");
      field.setAttribute("aria-describedby", "hours-error");
      field.classList.add("field-error");
    } else {
      field.removeAttribute("aria-invalid");
      field.removeAttribute("aria-describedby");
      field.classList.remove("field-error");
    }
  });
})();
