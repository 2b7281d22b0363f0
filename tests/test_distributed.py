"""The tutorial training under DistributedDataParallel: `torchrun
--nproc_per_node 2 -m fastact train` on CPU (gloo) ends with the parameters
of a single process trained on the full batches."""
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

from fastact_apps.train.ddp import single_process_train


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_ddp_two_processes_equal_single_process(tmp_path, fastact_backend):
    names = ["circles", "simplenn"]  # one run for both: most of its time is starting the processes
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FASTACT_BACKEND": fastact_backend}
    cmd = [sys.executable, "-P", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "fastact", "train", "--model", *names, "--epochs", "20", "--save", str(tmp_path)]
    # run outside the source tree, so the workers import the installed fastact
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DistributedDataParallel, 2 processes (gloo)" in done.stdout
    assert f"fastact backend: {fastact_backend}" in done.stdout
    for name in names:
        assert name in done.stdout
        ddp = torch.load(tmp_path / f"{name}.pt")
        single = single_process_train(name, epochs=20)
        assert list(ddp) == list(single)
        for key in single:
            # the same gradients summed in a different order: equal to rounding
            torch.testing.assert_close(ddp[key], single[key], rtol=1e-5, atol=1e-6, msg=lambda m: f"{name} {key}: {m}")
            assert not torch.equal(ddp[key], single_process_train(name, epochs=0)[key])  # it trained
