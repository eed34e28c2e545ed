// The book's small script (book_site.py adds it to every page).
(function () {
  "use strict";
  // Search results: Sphinx builds each snippet from the text of the result's page, where math
  // is still TeX (MathJax typesets it in the browser) and the print-only copy of the title and
  // contents is part of the text. Show "…" for math and leave print-only text out.
  function patchSearch() {
    if (typeof Search === "undefined" || !Search.htmlToText || Search._bookPatched) return;
    const original = Search.htmlToText;
    Search.htmlToText = function (htmlString, anchor) {
      const doc = new DOMParser().parseFromString(htmlString, "text/html");
      doc.querySelectorAll(".onlyprint, #jb-print-docs-body, .eqno, .headerlink")
        .forEach((el) => el.remove());
      doc.querySelectorAll(".math").forEach((el) => { el.textContent = "…"; });
      return original.call(this, doc.documentElement.outerHTML, anchor);
    };
    Search._bookPatched = true;
  }
  patchSearch();
  document.addEventListener("DOMContentLoaded", patchSearch);
})();
