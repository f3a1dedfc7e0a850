"""Rendering the docs from the committed result JSON: the one docs renderer.

``format`` holds the formatting every generated text shares (percentages, tables, intervals, means, the machine
line). ``docs`` fills the marked blocks and inline values of README.md and docs/*.md from ``bench/results/*.json``
(``sources`` reads the JSON; the ``blocks_*`` modules render one topic each); ``results_page`` writes
``docs/results.md`` and its plots (``results_plots``) from the suite's ``bench/results/multi_dataset`` files, read by
``suite_results`` and tabulated by ``suite_tables``. Entry points: ``bench/render_docs.py`` and
``bench/multi_dataset.py --page-only``. App layer: it reads result JSON; serving never imports it.
"""
