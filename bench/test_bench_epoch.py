"""A learner's whole epoch: torch's DataLoader loop, the same loop on
fastact, TrainStep.epoch (one C++ call), the floor (that C++ loop alone) and
scikit-learn's MLPClassifier where installed (fastact_apps/bench/epochs.py).

    pytest bench/test_bench_epoch.py --benchmark-group-by=param:case"""
import pytest

from fastact_apps.bench import epochs

CONTENDERS = ["torch", "loop", "epoch", "floor", "sklearn"]


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("case", sorted(epochs.CASES))
def test_epoch(benchmark, case, contender):
    benchmark.group = f"epoch-{case}"
    fns = epochs.contenders(epochs.CASES[case])
    if contender not in fns:
        pytest.skip(f"{contender} does not run {case}" + (" (or scikit-learn is not installed)"
                                                          if contender == "sklearn" else ""))
    benchmark.extra_info["batches"] = epochs.batches_per_epoch(epochs.CASES[case])
    benchmark(fns[contender])
