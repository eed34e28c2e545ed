// Loaded between require.js and the ipywidgets HTML manager on pages that show widgets.
(function () {
  // 1. The manager loads its icon fonts from the folder of its own AMD module; tell require.js
  //    that folder is the one this script was served from (the site's _static/widgets).
  var src = document.currentScript && document.currentScript.src;
  if (window.require && src && src.indexOf("_static/book-widgets.js") > 0) {
    var base = src.slice(0, src.lastIndexOf("/")) + "/widgets";
    window.require.config({ paths: { "@jupyter-widgets/html-manager/dist": base } });
  }
  // 2. Widget labels are typeset with MathJax 2's MathJax.Hub.Queue; the site runs MathJax 3.
  function shim() {
    var mj = window.MathJax;
    if (mj && !mj.Hub) {
      mj.Hub = {
        Queue: function (cmd) {
          if (Array.isArray(cmd) && cmd[0] === "Typeset" && mj.typesetPromise) {
            mj.typesetPromise([cmd[2]]).catch(function () {});
          }
        },
      };
    }
  }
  shim();
  document.addEventListener("DOMContentLoaded", shim);
})();
