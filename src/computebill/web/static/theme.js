// Dark by default; the toggle switches to light and remembers the choice on this device.
(function () {
  const root = document.documentElement;
  if (localStorage.getItem("theme") === "light") root.classList.add("light");
  document.addEventListener("click", function (event) {
    if (!event.target.closest("[data-theme-toggle]")) return;
    const light = root.classList.toggle("light");
    localStorage.setItem("theme", light ? "light" : "dark");
  });
})();
