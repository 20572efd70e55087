"""Fuzzing with hypothesis: mutated ONNX models and calibration files (mutate.py) through load,
discovery, calibration and capture end accepted or refused with a ValueError, never otherwise.
Bounded and derandomized here; bench/fuzz.py runs many more with fresh seeds."""

import pathlib
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutate import mutated_calibration, mutated_model, run_case, valid_calibration, valid_model

FUZZ = settings(max_examples=500, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.randoms(use_true_random=False))
def test_mutated_models_are_accepted_or_refused_cleanly(rng):
    with tempfile.TemporaryDirectory() as d:
        outcome, detail = run_case(pathlib.Path(d), mutated_model(rng), valid_calibration())
    assert outcome in ("accepted", "refused"), detail


@FUZZ
@given(st.randoms(use_true_random=False))
def test_mutated_calibration_files_are_accepted_or_refused_cleanly(rng):
    with tempfile.TemporaryDirectory() as d:
        outcome, detail = run_case(pathlib.Path(d), valid_model(), mutated_calibration(rng))
    assert outcome in ("accepted", "refused"), detail


def test_the_unmutated_case_is_accepted(tmp_path):
    assert run_case(tmp_path, valid_model(), valid_calibration()) == ("accepted", "3 layers")
