"""The multi-dataset evaluation: train every method on each set, sweep its exit knob, bench, write the results page.

``datasets`` says which slices of ``../shared/data`` are used and how, ``points`` turns per-depth logits into
accuracy / FLOPs curves and operating points (pure NumPy), ``run`` drives the resumable steps, and ``page`` refreshes
the summaries across seeds and writes ``docs/results.md`` and its plots through ``geep_deploy.reporting``. The entry
point is ``bench/multi_dataset.py``.
"""
