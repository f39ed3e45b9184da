/* Loaded synchronously in <head> (no inline script: see the Content-Security-Policy): marks the
   page as having JavaScript before it renders, so CSS can hide the no-JS fallbacks (.js-hide). */
document.documentElement.classList.add("js");
