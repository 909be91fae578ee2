// The header's menu on narrow screens: the `js` class on <html> (set here, in <head>, before the
// page paints) lets the CSS fold the links behind the Menu button, whose aria-expanded says
// whether they show. Without JavaScript the button stays hidden and the links stay listed.
(function () {
  document.documentElement.classList.add("js");
  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-menu-toggle]");
    if (!button) return;
    button.setAttribute("aria-expanded", String(button.getAttribute("aria-expanded") !== "true"));
  });
  document.addEventListener("keydown", function (event) {
    const button = document.querySelector("[data-menu-toggle][aria-expanded='true']");
    if (event.key !== "Escape" || !button) return;
    button.setAttribute("aria-expanded", "false");
    button.focus();
  });
})();
