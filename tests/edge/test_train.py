import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edge.checkpoint import load_meta, load_model
from edge.train import TrainArgs, train

FAST = dict(preset="tiny", batch_size=8, seq_len=32, eval_tokens=2048, progress=False, warmup=5, threads=1)


@pytest.mark.slow
def test_loss_decreases_in_seconds(tmp_path):
    meta = train(TrainArgs(steps=60, eval_every=10, out=str(tmp_path / "r"), **FAST))
    first, last = meta["history"][0]["val_loss"], meta["history"][-1]["val_loss"]
    for g in ("S", "M", "L", "XL"):
        assert last[g] < first[g] - 0.2, (g, first[g], last[g])


@pytest.mark.slow
def test_deterministic_and_resume(tmp_path):
    a = train(TrainArgs(steps=12, eval_every=12, save_every=6, out=str(tmp_path / "a"), **FAST))
    b = train(TrainArgs(steps=12, eval_every=12, save_every=6, out=str(tmp_path / "b"), **FAST))
    ma, mb = load_model(tmp_path / "a"), load_model(tmp_path / "b")
    assert all(torch.equal(x, y) for x, y in zip(ma.state_dict().values(), mb.state_dict().values()))
    assert a["history"] == b["history"]
    # resume: 12 steps, then continue to 20
    c = train(TrainArgs(steps=20, eval_every=20, out=str(tmp_path / "b"), **FAST))
    assert c["step"] == 20 and len(c["history"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("regime", ["sum", "random-layer"])
def test_other_regimes_run(tmp_path, regime):
    meta = train(TrainArgs(steps=4, eval_every=4, regime=regime, out=str(tmp_path / regime), **FAST))
    assert meta["train_args"]["regime"] == regime and meta["step"] == 4
    # The regime changed what was trained: same seed and data, different weights than `sample`.
    train(TrainArgs(steps=4, eval_every=4, out=str(tmp_path / "sample"), **FAST))
    got, base = load_model(tmp_path / regime).state_dict(), load_model(tmp_path / "sample").state_dict()
    assert any(not torch.equal(got[k], base[k]) for k in got)
    val = meta["history"][-1]["val_loss"]
    assert set(val) == {"S", "M", "L", "XL"} and all(v == v and 0 < v < 10 for v in val.values())


def test_sampling_probs_respected():
    from edge.config import MatFormerConfig
    from edge.model import MatFormerLM
    from edge.train import step_loss

    cfg = MatFormerConfig.from_preset("tiny")
    model = MatFormerLM(cfg)
    args = TrainArgs(steps=1, probs=(0, 0, 0, 1), **FAST)
    x = torch.zeros(1, 4, dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    assert {step_loss(model, x, x, cfg, args, gen)[1] for _ in range(20)} == {"XL"}


@pytest.mark.slow
def test_ddp_two_processes_keep_replicas_identical(tmp_path):
    import socket

    with socket.socket() as sock:  # a free port for the rendezvous (port 0 is not accepted)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(port),
           "-m", "edge", "train", "--preset", "tiny", "--steps", "6", "--batch-size", "4", "--seq-len", "32",
           "--eval-every", "6", "--quiet", "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2], start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=240)
    finally:  # never leave worker processes behind, even on a timeout
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
    assert proc.returncode == 0, stderr[-2000:]
    meta = load_meta(out)
    assert meta["world_size"] == 2
    digests = meta["replica_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert load_model(out).config.n_layers == 4
