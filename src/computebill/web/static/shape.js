// The configurator's vCPUs follow the GPU count, as a machine's shape does: choosing a count sets
// the vCPUs to that count's shape (the server's figures, on the GPU select) before htmx asks for
// the new price. Captured on the document, so it runs before the form's htmx listener.
(function () {
  document.addEventListener(
    "change",
    function (event) {
      const count = event.target.closest && event.target.closest("select[data-shape-vcpus]");
      if (!count || !count.form) return;
      const vcpus = count.form.elements.namedItem("vcpus");
      const shaped = JSON.parse(count.dataset.shapeVcpus)[count.value];
      if (vcpus && shaped !== undefined) vcpus.value = String(shaped);
    },
    true,
  );
})();
