// The course website's one script of its own (docs/conf.py loads it, deferred, on every page).

// Search previews: Sphinx quotes the page text around the first match, reading everything the theme marks
// as the main content, which begins with the page's buttons and two tables of contents (the sidebar's and
// the one kept for printing). Quote the lesson.
if (typeof Search !== "undefined") {
  const htmlToText = Search.htmlToText;
  Search.htmlToText = (htmlString, anchor) => {
    const doc = new DOMParser().parseFromString(htmlString, "text/html");
    doc.querySelectorAll(".bd-sidebar-secondary, .bd-header-article, .onlyprint, .prev-next-area, " +
                         ".bd-footer-article, .notebook-download")
      .forEach((el) => el.remove());
    return htmlToText(doc.documentElement.outerHTML, anchor);
  };
}

// A formula in a sentence cannot wrap (MathJax 3 breaks no lines): one wider than its column is set on a
// line of its own that scrolls sideways, like a displayed formula, instead of running off the page.
function boxWideFormulas() {
  document.querySelectorAll('.bd-article mjx-container:not([display="true"])').forEach((m) => {
    m.classList.remove("wide-formula");
    if (m.getBoundingClientRect().width > m.parentElement.getBoundingClientRect().width) {
      m.classList.add("wide-formula");
    }
  });
}
window.addEventListener("load", () => {
  if (window.MathJax && MathJax.startup) {
    MathJax.startup.promise.then(boxWideFormulas);
    window.addEventListener("resize", boxWideFormulas);
  }
});

// A figure drawn smaller than its own size (a narrow window) opens full size, in a tab of its own, on a click.
document.querySelectorAll(".bd-article img").forEach((img) => {
  if (img.closest("a")) return;
  img.addEventListener("click", () => {
    if (img.getBoundingClientRect().width < img.naturalWidth) window.open(img.src, "_blank");
  });
});
