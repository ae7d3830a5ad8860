"""The operator's web console: a page served by the daemon at `/`, built on its own JSON endpoints.

Plain HTML, CSS and JavaScript shipped in this package (no build step, no CDN), with the uPlot
chart library vendored under `static/vendor/` beside its licence. The page reads `/status`,
`/v1/decisions` and the per-group history that `routes` adds; pause, resume and reload go to the
same token-guarded endpoints as curl does, with a token the operator types into the page and that
lives only in the tab's sessionStorage. Every response carries a strict Content-Security-Policy:
scripts, styles and data from the daemon itself only, no inline script, no eval.
"""
