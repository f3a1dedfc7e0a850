"""The suite's protocol in names: what is trained how, what is benched how, and the one GEEP it reports.

Named apart from the run (``run.py``) and the page (``geep_deploy.reporting.results_page``) so that both read the
same choices and neither imports the other.
"""

PLANNED_SEEDS = (42, 43, 44)
"""The training seeds the committed run trains on every set (issue 23: three); the page names the missing ones."""

FASTBERT_DISTILL_EPOCHS = 5
"""FastBERT's self-distillation epochs: its reference code distils for separate epochs after fine-tuning, and its
README's example command fine-tunes for 3 and distils for 5 (``--epochs_num 3 --distill_epochs_num 5``)."""

SUITE_DISTILL_WEIGHT = 0.1
"""The suite trains GEEP with distillation at 0.1 of the reference weight. On AG News's held-out rows (not the
suite's test rows) it is the weight that kept depth L level with `full` on two training seeds, with students about as
accurate as the reference's (`bench/results/train_diagnostics_ag_news.json`, docs/training.md). The library's
default stays the reference."""

BENCH_RUNS = 2
"""Separate bench runs per batch size: the spread between them is printed beside every wall-clock figure."""

SKIP_EXPORT = "skip"
"""The bench's name for GEEP's export that exits through the shared exit path (knobs ``probe:R@skip``)."""
GEEP_EXPORT = "geep_export"
"""The bench's name for GEEP's main export when a baseline's rule runs on GEEP's heads (``fastbert:S@geep``)."""

HEADLINE = "probe"
"""The one GEEP configuration the suite reports as GEEP, named before any test row is scored: the layer-1 probe
dispatch over GEEP's students (``calibrate --predictor probe``, exit mode ``student``, no escalation), its risk
chosen on the tuning rows at each target like every method's knob. The token table, escalation, the shared exit
path and GEEP's students under FastBERT's entropy exit are ablations, never picked per set."""
ABLATIONS = ("geep", "probe_esc", "probe_skip", "geep_entropy", "static")

ALL_DEPTH_L = "probe:0"
"""GEEP's probe dispatch with every row sent to depth L: it must time within the noise line of ``full``."""
AREA_RANGE = (1.0, 3.0)
"""The FLOPs speed-ups the area under each method's accuracy curve spans."""

FULL_MARGIN_POINTS = 1.0
"""How far below ``full`` the headline may sit at a target (the interval's low end) for the goal: "within a point
of `full` at 2x" is the project's goal since its exit-prediction issue (before this protocol's data)."""
