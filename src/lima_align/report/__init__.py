"""Reports from judgments files: Figure-1 style stacked bars, Likert bars with CIs, tables and a
self-contained HTML page with a per-prompt drill-down (model outputs escaped, never raw HTML)."""
