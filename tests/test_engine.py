"""The training engine: resume, NaN guard, atomic checkpoints, the label store, results."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from mlrobust import losses
from mlrobust.config import DataConfig, ExperimentConfig, TrainConfig
from mlrobust.engine import (Hook, Method, NonFiniteLossError, Trainer, atomic_save, build_schedule, epoch_order,
                             load_checkpoint, progress_enabled)
from mlrobust.engine import checkpoint as checkpoint_module
from mlrobust.experiments import build_data, observed_labels, run_experiment
from mlrobust.methods import SupervisedMethod
from mlrobust.models import create_model

from _hooks import Interrupt

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(tmp_path: Path, **train: object) -> ExperimentConfig:
    cfg = ExperimentConfig(name="tiny", output_dir=str(tmp_path))
    cfg.data = DataConfig(n_train=128, n_test=64, image_size=32)
    cfg.train = TrainConfig(**{"epochs": 3, "batch_size": 32, "lr": 0.05, "progress": False, **train})
    return cfg


@pytest.fixture(scope="module")
def tiny_data():
    return build_data(DataConfig(n_train=128, n_test=64, image_size=32))


def make_trainer(tiny_data, run_dir: Path | None, cfg: TrainConfig, hooks=(), criterion=losses.bce) -> Trainer:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = create_model("cnn_s", 24)
    return Trainer(model, SupervisedMethod(criterion), tiny_data.train, tiny_data.train.labels, cfg,
                   hooks=hooks, run_dir=run_dir)


class CountingHook(Hook):
    """Keeps state across epochs; the state must survive a resume."""

    def __init__(self) -> None:
        self.batches = 0

    def on_batch_end(self, trainer, batch, logits, loss) -> None:
        self.batches += 1

    def state_dict(self) -> dict:
        return {"batches": self.batches}

    def load_state_dict(self, state: dict) -> None:
        self.batches = state["batches"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"parameter {k} differs"


def test_resume_in_process_matches_uninterrupted_run(tmp_path, tiny_data) -> None:
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05, progress=False)
    straight_counter = CountingHook()
    straight = make_trainer(tiny_data, tmp_path / "a", cfg, hooks=[straight_counter])
    straight.fit()

    crashed = make_trainer(tiny_data, tmp_path / "b", cfg, hooks=[Interrupt(2), CountingHook()])
    with pytest.raises(KeyboardInterrupt):
        crashed.fit()
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 2

    resumed_counter = CountingHook()
    resumed = make_trainer(tiny_data, tmp_path / "b", cfg, hooks=[Interrupt(-1), resumed_counter])
    resumed.fit(resume=True)
    assert_same_weights(straight.module.state_dict(), resumed.module.state_dict())
    assert resumed_counter.batches == straight_counter.batches == 3 * 4
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    assert straight.evaluate(tiny_data.test) == resumed.evaluate(tiny_data.test)


def test_resume_after_sigkill_gives_identical_metrics(tmp_path) -> None:
    """Kill a real run with SIGKILL after its second checkpoint, resume it, and compare it
    with an uninterrupted run of the same config: the test metrics must be identical."""
    cfg = ExperimentConfig(name="run", output_dir=str(tmp_path / "straight"))
    cfg.data = DataConfig(n_train=1024, n_test=128, image_size=32)
    cfg.train = TrainConfig(epochs=8, batch_size=32, lr=0.05, progress=False)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(cfg.to_dict()))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLROBUST_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "mlrobust", "run", "--config", str(config_file)]

    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=600)
    straight = json.loads((tmp_path / "straight" / "run" / "metrics.json").read_text())

    killed_dir = tmp_path / "killed"
    override = ["--set", f"output_dir={killed_dir}"]
    proc = subprocess.Popen(cmd + override, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = killed_dir / "run" / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpt.is_file() and load_checkpoint(ckpt)["epoch"] >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    epochs_done = load_checkpoint(ckpt)["epoch"]
    assert 2 <= epochs_done < 8
    assert not (killed_dir / "run" / "metrics.json").exists()

    out = subprocess.run(cmd + override + ["--resume"], check=True, env=env, capture_output=True, text=True,
                         timeout=600)
    assert f"resumed from {ckpt} after epoch {epochs_done}" in out.stderr
    resumed = json.loads((killed_dir / "run" / "metrics.json").read_text())
    assert resumed["test"] == straight["test"]
    assert resumed["epochs"] == straight["epochs"] == 8
    assert_same_weights(load_checkpoint(ckpt)["model"],
                        load_checkpoint(tmp_path / "straight" / "run" / "checkpoint.pt")["model"])


def test_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(tmp_path, tiny_data) -> None:
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05, progress=False)
    calls = {"n": 0}

    def poisoned(logits, y):
        calls["n"] += 1
        loss = losses.bce(logits, y)
        return loss * float("nan") if calls["n"] == 6 else loss  # step 2 of epoch 2 (4 steps per epoch)

    trainer = make_trainer(tiny_data, tmp_path, cfg, criterion=poisoned)
    with pytest.raises(NonFiniteLossError, match=r"diverged at epoch 2, step 2 of the epoch \(global step 6\): loss nan"):
        trainer.fit()
    saved = load_checkpoint(tmp_path / "checkpoint.pt")
    assert saved["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())
    with open(tmp_path / "history.csv") as f:
        assert len(list(csv.DictReader(f))) == 1


def test_inf_loss_is_caught_too(tmp_path, tiny_data) -> None:
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.05, progress=False)
    trainer = make_trainer(tiny_data, tmp_path, cfg, criterion=lambda x, y: losses.bce(x, y) + float("inf"))
    with pytest.raises(NonFiniteLossError, match="diverged at epoch 1, step 1 of the epoch .*loss inf"):
        trainer.fit()
    assert not (tmp_path / "checkpoint.pt").exists()


def test_exploding_logits_stop_training_while_the_loss_is_still_finite(tmp_path, tiny_data) -> None:
    """A loss of 1e16 is finite; logits of 1e8 mean the model has diverged all the same."""
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.05, progress=False)
    calls = {"n": 0}

    class Exploding(Method):
        def training_loss(self, trainer, batch):
            calls["n"] += 1
            logits = trainer.model(batch.images) * (1e8 if calls["n"] == 3 else 1.0)
            return losses.bce(logits, batch.targets), logits

    trainer = make_trainer(tiny_data, tmp_path, cfg)
    trainer.method = Exploding()
    with pytest.raises(NonFiniteLossError, match=r"step 3 of the epoch .*largest \|logit\| [0-9.e+]+, gradient norm"):
        trainer.fit()


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch) -> None:
    path = tmp_path / "checkpoint.pt"
    atomic_save({"epoch": 1, "w": torch.ones(3)}, path)
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"epoch": 2}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"], "a temporary file was left behind"
    assert load_checkpoint(path)["epoch"] == 1


def test_load_checkpoint_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_checkpoint(bad)


class Relabel(Hook):
    """Before epoch 1, mark every label of the first 32 images as positive."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def on_epoch_start(self, trainer, epoch) -> None:
        if epoch == 1:
            labels = trainer.train_labels.clone()
            labels[:32] = 1
            trainer.set_train_labels(labels)

    def on_batch_end(self, trainer, batch, logits, loss) -> None:
        if trainer.epoch == 1:
            self.seen.append(batch.targets[batch.index < 32].clone())


def test_hooks_rewrite_the_label_store_and_batches_follow(tmp_path, tiny_data) -> None:
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05, progress=False)
    hook = Relabel()
    trainer = make_trainer(tiny_data, tmp_path, cfg, hooks=[hook])
    trainer.fit()
    seen = torch.cat(hook.seen)
    assert len(seen) == 32 and (seen == 1).all()
    assert (load_checkpoint(tmp_path / "checkpoint.pt")["train_labels"][:32] == 1).all()
    assert torch.equal(tiny_data.train.labels[32:], trainer.train_labels[32:].cpu())


def test_predict_is_in_order_and_restores_train_mode(tiny_data) -> None:
    trainer = make_trainer(tiny_data, None, TrainConfig(epochs=1, batch_size=32, progress=False))
    trainer.module.train()
    full = trainer.predict(tiny_data.test, batch_size=64)
    chunked = trainer.predict(tiny_data.test, batch_size=7)
    assert full.shape == (64, 24) and full.dtype == torch.float32
    torch.testing.assert_close(full, chunked)
    assert trainer.module.training


def test_epoch_order_is_deterministic_and_shards_cover_the_data() -> None:
    a, b = epoch_order(10, seed=3, epoch=0), epoch_order(10, seed=3, epoch=0)
    assert torch.equal(a, b) and sorted(a.tolist()) == list(range(10))
    assert not torch.equal(a, epoch_order(10, seed=3, epoch=1))
    shards = [epoch_order(10, seed=3, epoch=0, rank=r, world_size=3) for r in range(3)]
    assert {len(s) for s in shards} == {4}  # padded to 12 = 3 x 4
    assert set(torch.cat(shards).tolist()) == set(range(10))


@pytest.mark.parametrize("schedule,expect", [
    ("step", lambda f: f[0] == 1 and f[10] == pytest.approx(0.1) and f[19] == pytest.approx(0.1)),
    ("cosine", lambda f: f[0] == 1 and f[-1] < 0.01 and all(x >= y for x, y in zip(f, f[1:]))),
    ("onecycle", lambda f: f[0] < 0.1 and max(f) == pytest.approx(1, abs=0.06) and f[-1] < 0.01),
    ("constant", lambda f: set(f) == {1.0}),
])
def test_learning_rate_schedules(schedule, expect) -> None:
    cfg = TrainConfig(epochs=20, schedule=schedule, lr_steps=[10], lr=1.0)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_schedule(opt, cfg, steps_per_epoch=1)
    factors = []
    for _ in range(20):
        factors.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert expect(factors), factors


def test_run_experiment_writes_the_results_folder(tmp_path) -> None:
    cfg = tiny_config(tmp_path, epochs=2)
    cfg.data.protocol, cfg.data.protocol_args = "partial", {"known": 0.5}
    result = run_experiment(cfg)
    run = tmp_path / "tiny"
    assert {p.name for p in run.iterdir()} >= {"config.json", "env.json", "history.csv", "metrics.json",
                                               "checkpoint.pt"}
    assert ExperimentConfig.from_dict(json.loads((run / "config.json").read_text())) == cfg
    env = json.loads((run / "env.json").read_text())
    assert env["torch"] == torch.__version__ and env["device"] == "cpu"
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["test"] == result.metrics and set(result.metrics) >= {"mAP", "CF1", "OF1"}
    assert saved["observed_labels"]["known_share"] == pytest.approx(0.5, abs=0.08)


def test_evaluation_uses_clean_test_labels_not_the_protocol(tmp_path, tiny_data) -> None:
    cfg = tiny_config(tmp_path, epochs=1)
    cfg.data.protocol, cfg.data.protocol_args = "noisy", {"clean": 0.5}
    y_obs = observed_labels(tiny_data.train.labels, cfg.data)
    assert (y_obs != tiny_data.train.labels).float().mean() == pytest.approx(0.5, abs=0.05)
    result = run_experiment(cfg, data=tiny_data, write=False)
    assert result.metrics == result.trainer.evaluate(tiny_data.test)


def test_progress_policy(monkeypatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("MLROBUST_PROGRESS", "0")
    assert progress_enabled() is False
    assert progress_enabled(True) is True
    monkeypatch.setenv("MLROBUST_PROGRESS", "1")
    assert progress_enabled() is True
    monkeypatch.delenv("MLROBUST_PROGRESS")
    monkeypatch.setenv("CI", "true")
    assert progress_enabled() is False


def test_train_labels_must_match_the_dataset(tiny_data) -> None:
    with pytest.raises(ValueError, match="train_labels has 5 rows but the training set has 128"):
        Trainer(create_model("cnn_s", 24), SupervisedMethod(losses.bce), tiny_data.train,
                tiny_data.train.labels[:5], TrainConfig(progress=False))


def test_resume_refuses_a_different_config(tmp_path) -> None:
    cfg = tiny_config(tmp_path, epochs=1)
    run_experiment(cfg)
    before = (tmp_path / "tiny" / "config.json").read_text()
    changed = tiny_config(tmp_path, epochs=2, lr=0.5)
    with pytest.raises(ValueError, match=r"written with a different config \(train.epochs: 1 -> 2; train.lr: 0.05 -> 0.5\)"):
        run_experiment(changed, resume=True)
    assert (tmp_path / "tiny" / "config.json").read_text() == before
    more_epochs = tiny_config(tmp_path, epochs=2)  # the schedule spans all epochs: more epochs is another run
    with pytest.raises(ValueError, match=r"\(train.epochs: 1 -> 2\)\. Start a new run"):
        run_experiment(more_epochs, resume=True)
    assert (tmp_path / "tiny" / "config.json").read_text() == before


def test_a_bad_config_leaves_no_run_folder(tmp_path) -> None:
    cfg = tiny_config(tmp_path)
    cfg.loss.args = {"gamma": 2}
    with pytest.raises(TypeError, match="gamma"):
        run_experiment(cfg)
    assert not (tmp_path / "tiny").exists()


class FitStartState(Hook):
    """Sets state in on_fit_start; a resume must restore the saved value over it."""

    def __init__(self) -> None:
        self.value = -1

    def on_fit_start(self, trainer) -> None:
        self.value = 0

    def on_epoch_end(self, trainer, epoch, record) -> None:
        self.value += 1

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = state["value"]


def test_on_fit_start_runs_before_the_checkpoint_is_restored(tmp_path, tiny_data) -> None:
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05, progress=False)
    with pytest.raises(KeyboardInterrupt):
        make_trainer(tiny_data, tmp_path, cfg, hooks=[Interrupt(2), FitStartState()]).fit()
    hook = FitStartState()
    make_trainer(tiny_data, tmp_path, cfg, hooks=[Interrupt(-1), hook]).fit(resume=True)
    assert hook.value == 3


def test_progress_is_off_in_kernels_started_by_batch_runners(monkeypatch) -> None:
    from mlrobust import progress as utils

    monkeypatch.delenv("MLROBUST_PROGRESS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setitem(sys.modules, "ipykernel", object())
    monkeypatch.setattr(utils, "_kernel_parent_is_batch_runner", lambda: True)
    assert progress_enabled() is False
    monkeypatch.setattr(utils, "_kernel_parent_is_batch_runner", lambda: False)
    assert progress_enabled() is True


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fit_resume_and_bf16_autocast(tmp_path, tiny_data) -> None:
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05, progress=False, device="cuda")
    trainer = make_trainer(tiny_data, tmp_path, cfg)
    trainer.fit()
    logits = trainer.predict(tiny_data.test)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    resumed = make_trainer(tiny_data, tmp_path, TrainConfig(**{**cfg.__dict__, "epochs": 3}))
    resumed.fit(resume=True)
    assert resumed.epoch == 3


class TwoViews(Method):
    """A consistency-style method: BCE on a weak view plus BCE on a strong view, recording the
    views it was given (what a weak/strong self-training method does with a batch)."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def training_loss(self, trainer, batch):
        weak, strong = batch.view("weak"), batch.view("strong")
        self.seen.append(torch.stack([weak.sum(), strong.sum(), batch.view("strong", k=1).sum()]))
        logits_weak, features = trainer.model(weak, with_features=True)
        assert features.dim() == 4 and features.shape[0] == weak.shape[0]
        logits = trainer.model(strong)
        return losses.bce(logits_weak, batch.targets) + losses.bce(logits, batch.targets), logits


def test_views_are_seeded_per_batch_and_resume_bit_exactly(tmp_path, tiny_data) -> None:
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05, progress=False)

    def trainer(run_dir, hooks, method):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = create_model("cnn_s", 24)
        return Trainer(model, method, tiny_data.train, tiny_data.train.labels, cfg, hooks=hooks, run_dir=run_dir)

    straight_method = TwoViews()
    straight = trainer(tmp_path / "a", [], straight_method)
    straight.fit()
    sums = torch.stack(straight_method.seen)
    assert not torch.equal(sums[:, 1], sums[:, 2]), "two draws of one policy differ"
    assert not torch.equal(sums[:, 0], sums[:, 1]), "weak and strong views differ"
    crashed = trainer(tmp_path / "b", [Interrupt(2)], TwoViews())
    with pytest.raises(KeyboardInterrupt):
        crashed.fit()
    resumed_method = TwoViews()
    resumed = trainer(tmp_path / "b", [Interrupt(-1)], resumed_method)
    resumed.fit(resume=True)
    torch.testing.assert_close(torch.stack(resumed_method.seen), sums[-len(resumed_method.seen):], rtol=0, atol=0)
    assert_same_weights(straight.module.state_dict(), resumed.module.state_dict())


def test_set_train_labels_checks_and_inference_passes(tiny_data) -> None:
    trainer = make_trainer(tiny_data, None, TrainConfig(epochs=1, batch_size=32, progress=False))
    with pytest.raises(ValueError, match="train_labels has 3 rows but the training set has 128"):
        trainer.set_train_labels(tiny_data.train.labels[:3])
    with pytest.raises(ValueError, match=r"train_labels must hold values in \{-1, 0, 1\}"):
        trainer.set_train_labels(tiny_data.train.labels * 2)
    trainer.set_train_labels(torch.zeros_like(tiny_data.train.labels))
    assert trainer.train_labels.dtype == torch.int8 and not trainer.train_labels.any()
    features = trainer.features(tiny_data.test, batch_size=20)
    assert features.shape == (64, trainer.module.backbone.num_features)
    rows = trainer.infer(tiny_data.test, lambda x: trainer.module(x)[:, :2], batch_size=9)
    torch.testing.assert_close(rows, trainer.predict(tiny_data.test)[:, :2])


def test_a_dataset_missing_a_protocol_member_is_named(tiny_data) -> None:
    class Bare(torch.utils.data.Dataset):
        labels = tiny_data.train.labels
        classes = tiny_data.train.classes

        def __len__(self):
            return 128

        def __getitem__(self, i):
            return tiny_data.train[i]

    with pytest.raises(TypeError, match="train_set \\(Bare\\) lacks kind, in_memory, load_batch"):
        Trainer(create_model("cnn_s", 24), SupervisedMethod(losses.bce), Bare(), tiny_data.train.labels,
                TrainConfig(progress=False))


def test_results_files_get_the_users_normal_permissions(tmp_path) -> None:
    import os
    import stat

    from mlrobust.atomic import atomic_save, atomic_write_text, default_file_mode

    atomic_write_text("x", tmp_path / "metrics.json")
    atomic_save({"w": torch.ones(1)}, tmp_path / "checkpoint.pt")
    for name in ("metrics.json", "checkpoint.pt"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == default_file_mode(), name


def test_grad_clip_watches_the_norm_before_clipping(tiny_data) -> None:
    """With ``grad_clip`` the step clips the gradients and the divergence guard still sees
    the unclipped norm (one computation, clip_grad_norm_'s return value)."""
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.05, progress=False, grad_clip=1e-3)
    trainer = make_trainer(tiny_data, None, cfg)
    seen = []

    class Recorder(Hook):
        def on_batch_end(self, trainer, batch, logits, loss) -> None:
            grads = [p.grad for p in trainer.module.parameters() if p.grad is not None]
            seen.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    trainer.hooks.append(Recorder())
    trainer.fit()
    watched = [float(w[2]) for w in trainer._watch]
    assert all(s <= 1e-3 * (1 + 1e-4) for s in seen)  # clipped before the optimiser step
    assert all(w > 1e-3 for w in watched)  # the guard saw the norm before clipping


def test_channels_last_on_every_device_unless_switched_off(tiny_data) -> None:
    """NHWC conv weights and input batches on the CPU too (oneDNN's faster path), the same
    values either way; ``channels_last=False`` keeps NCHW."""
    def spatial_kernels(trainer: Trainer) -> list[torch.Tensor]:
        return [p for p in trainer.module.parameters() if p.dim() == 4 and p.shape[-1] > 1]

    images = tiny_data.train.load_batch(torch.arange(4))
    runs = {}
    for on in (True, False):
        trainer = make_trainer(tiny_data, None, TrainConfig(epochs=1, batch_size=32, device="cpu", progress=False,
                                                             checkpoint=False, channels_last=on))
        batch = trainer.preprocess(images)
        assert batch.is_contiguous(memory_format=torch.channels_last) == on
        assert all(p.is_contiguous(memory_format=torch.channels_last) == on for p in spatial_kernels(trainer))
        runs[on] = trainer.predict(tiny_data.test)
    torch.testing.assert_close(runs[True], runs[False], rtol=1e-4, atol=1e-4)
