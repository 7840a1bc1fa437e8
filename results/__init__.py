"""The results layer: metrics records → tables, figures and the Markdown pages under docs/results/.

`python -m results table|figure|record|pages ...` (see `results/__main__.py`); `figures.ipynb` calls
`results.figures`. Nothing here runs a model: it reads what `python -m metrics` wrote.
"""
