"""The product's default dispatch per device is the measured one (issue 23, item 3): on the CPU, the dispatch over
GEEP's heads that the committed suite results find faster at equal accuracy on more sets
(`reporting.suite_tables.measured_cpu_default`, docs/results.md "Which dispatch on GEEP's heads"); the GPU has not
measured it, so it keeps the probe."""

from __future__ import annotations

from pathlib import Path

from geep_deploy.names import DEFAULT_PREDICTOR, DEVICES, PREDICTOR_KINDS, PROBE
from geep_deploy.reporting.suite_results import aggregated, learns, load_sets
from geep_deploy.reporting.suite_tables import measured_cpu_default

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results" / "multi_dataset"


def test_every_device_has_a_known_default() -> None:
    assert set(DEFAULT_PREDICTOR) == set(DEVICES) and set(DEFAULT_PREDICTOR.values()) <= set(PREDICTOR_KINDS)


def test_the_cpu_default_is_the_measured_winner_and_cuda_keeps_the_probe() -> None:
    sets = [s for s in aggregated(load_sets(RESULTS)) if learns(s)]
    assert sets, f"no committed suite results under {RESULTS}"
    assert DEFAULT_PREDICTOR["cpu"] == measured_cpu_default(sets)
    assert DEFAULT_PREDICTOR["cuda"] == PROBE
