// Print buttons: <button data-print> prints the page (the CSP allows no inline handler).
document.addEventListener("click", function (event) {
  if (event.target.closest("[data-print]")) window.print();
});
