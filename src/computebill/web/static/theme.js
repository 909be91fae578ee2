// Dark by default; the toggle switches to light and remembers the choice on this device. The
// button names the theme that is on, and says what a press does.
(function () {
  const root = document.documentElement;
  if (localStorage.getItem("theme") === "light") root.classList.add("light");

  function label() {
    const light = root.classList.contains("light");
    document.querySelectorAll("[data-theme-toggle]").forEach(function (button) {
      button.textContent = light ? "Light theme" : "Dark theme";
      button.setAttribute("aria-label", light ? "Light theme on: switch to dark" : "Dark theme on: switch to light");
    });
  }

  document.addEventListener("DOMContentLoaded", label);
  // Whatever changes the theme, the button follows.
  new MutationObserver(label).observe(root, { attributes: true, attributeFilter: ["class"] });
  document.addEventListener("click", function (event) {
    if (!event.target.closest("[data-theme-toggle]")) return;
    const light = root.classList.toggle("light");
    localStorage.setItem("theme", light ? "light" : "dark");
  });
})();
