"""Configs: round trips, unknown keys, types, overrides, files; the command line."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from mlrobust.cli import main
from mlrobust.config import ConfigError, DataConfig, ExperimentConfig, TrainConfig, apply_overrides, load_config
from mlrobust.experiments import observed_labels
from mlrobust.methods import MethodContext, build_method


def test_round_trip_through_dict_json_and_yaml(tmp_path) -> None:
    cfg = ExperimentConfig(name="x", data=DataConfig(protocol="partial", protocol_args={"known": 0.1}),
                           train=TrainConfig(lr_steps=[10, 15], grad_clip=1.0))
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg
    (tmp_path / "c.json").write_text(json.dumps(cfg.to_dict()))
    assert load_config(tmp_path / "c.json") == cfg
    (tmp_path / "c.yaml").write_text(cfg.to_yaml())
    assert load_config(tmp_path / "c.yaml") == cfg


def test_unknown_keys_are_listed_with_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) train\.epoch in train; valid keys: epochs, "):
        ExperimentConfig.from_dict({"train": {"epoch": 3}})
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) datta in the top level; valid keys: name,"):
        ExperimentConfig.from_dict({"datta": {}})


@pytest.mark.parametrize("d,message", [
    ({"train": {"epochs": "ten"}}, "train.epochs must be of type int, got 'ten'"),
    ({"train": {"epochs": True}}, "train.epochs must be of type int, got True"),
    ({"train": {"epochs": 0}}, "train.epochs must be >= 1, got 0"),
    ({"train": {"optimizer": "lbfgs"}}, "train.optimizer must be 'sgd', 'adam' or 'adamw', got 'lbfgs'"),
    ({"train": {"lr_steps": "10"}}, "train.lr_steps must be a list"),
    ({"data": {"augment": "mixup"}}, "data.augment must be 'none', 'flip', 'weak' or 'strong'"),
    ({"data": 3}, "data must be a mapping of DataConfig fields"),
    ({"name": "../elsewhere"}, "name must be a relative folder inside output_dir (not empty, not absolute, no '..'), "
                               "got '../elsewhere'"),
    ({"name": "/tmp/run"}, "name must be a relative folder inside output_dir (not empty, not absolute, no '..'), "
                           "got '/tmp/run'"),
])
def test_bad_values_name_the_key(d, message) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ExperimentConfig.from_dict(d)


def test_ints_are_accepted_for_floats_and_none_for_optionals() -> None:
    cfg = ExperimentConfig.from_dict({"train": {"lr": 1, "grad_clip": None}, "model": {"weights": None}})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)


def test_overrides() -> None:
    cfg = apply_overrides(ExperimentConfig(), ["train.lr=0.01", "data.protocol_args={known: 0.1}",
                                               "train.lr_steps=[10, 15]", "name=abc"])
    assert cfg.train.lr == 0.01 and cfg.data.protocol_args == {"known": 0.1}
    assert cfg.train.lr_steps == [10, 15] and cfg.name == "abc"
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(ExperimentConfig(), ["train.lr"])
    with pytest.raises(ConfigError, match="train.lrr"):
        apply_overrides(ExperimentConfig(), ["train.lrr=1"])
    with pytest.raises(ConfigError, match="name is not a config section"):
        apply_overrides(ExperimentConfig(), ["name.x=1"])


def test_config_files_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_config(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump({"train": {"epocs": 2}}))
    with pytest.raises(ConfigError, match="wrong.yaml: unknown config key"):
        load_config(wrong)


def test_protocol_and_method_names_are_checked() -> None:
    import torch

    y = torch.ones(4, 3, dtype=torch.int8)
    with pytest.raises(ConfigError, match="unknown data.protocol 'parital'; valid: "):
        observed_labels(y, DataConfig(protocol="parital"))
    with pytest.raises(ConfigError, match=r"data.protocol_args \['keep'\] not accepted by protocol 'partial'; "
                                          r"valid: \['known', 'per_image', 'min_known_positives'\]"):
        observed_labels(y, DataConfig(protocol="partial", protocol_args={"keep": 0.1}))
    cfg = ExperimentConfig(method="durand")
    with pytest.raises(ConfigError, match="unknown method 'durand'"):
        build_method(cfg, MethodContext(cfg, None, y))
    cfg = ExperimentConfig(method="curriculum", method_args={"strategy": "threshold", "theeta": 2})
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) method_args.theeta in method_args; "
                                          r"valid keys: strategy, theta, at, passes, batch_size"):
        build_method(cfg, MethodContext(cfg, None, y))
    cfg = ExperimentConfig(method="curriculum", method_args={"strategy": "maybe"})
    with pytest.raises(ConfigError, match=r"method_args.strategy must be one of \['threshold'"):
        build_method(cfg, MethodContext(cfg, None, y))


def test_cli_config_and_errors(capsys) -> None:
    assert main(["config", "--set", "train.epochs=2"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["train"]["epochs"] == 2
    assert main(["config", "--set", "train.epoch=2"]) == 2
    assert "unknown config key(s) train.epoch" in capsys.readouterr().err
    assert main(["run", "--config", "/nonexistent/c.yaml"]) == 2
    assert "config file not found: /nonexistent/c.yaml" in capsys.readouterr().err
    assert main(["datasets"]) == 0
    assert "shapescenes" in capsys.readouterr().out.split()


def test_cli_run_writes_results(tmp_path, capsys) -> None:
    args = ["run", "--set", f"output_dir={tmp_path}", "--set", "name=cli", "--set", "train.epochs=1",
            "--set", "data.n_train=64", "--set", "data.n_test=32", "--set", "train.batch_size=32"]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["run_dir"] == str(tmp_path / "cli")
    assert printed["test"] == json.loads((tmp_path / "cli" / "metrics.json").read_text())["test"]


def test_cli_bench_prints_a_table(tmp_path, capsys) -> None:
    out = tmp_path / "bench.md"
    assert main(["bench", "--steps", "2", "--warmup", "1", "--batch-size", "8", "--output", str(out)]) == 0
    table = capsys.readouterr().out
    assert "images_per_s" in table and "train step (bce)" in table and "render shapescenes" in table
    assert out.read_text().strip() == table.strip()


def test_exponent_floats_on_the_command_line(capsys) -> None:
    # YAML 1.1 reads "1e-3" as a string; a float field must still accept it
    cfg = apply_overrides(ExperimentConfig(), ["train.lr=1e-3", "train.weight_decay=5E-4"])
    assert cfg.train.lr == 0.001 and cfg.train.weight_decay == 0.0005
    with pytest.raises(ConfigError, match="train.lr must be of type float"):
        apply_overrides(ExperimentConfig(), ["train.lr=fast"])


def test_cli_reports_bad_loss_options_without_a_traceback(tmp_path, capsys) -> None:
    args = ["run", "--set", f"output_dir={tmp_path}", "--set", "name=bad", "--set", "loss.args={gamma: 2}"]
    assert main(args) == 2
    assert "gamma" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def _renamed(cfg: ExperimentConfig, name: str) -> ExperimentConfig:
    cfg.name = name  # set after the config was built: checked when the run folder is asked for
    return cfg


@pytest.mark.parametrize("build,message", [
    (lambda: TrainConfig(amp="false"), "train.amp must be of type bool, got 'false'"),
    (lambda: TrainConfig(grad_clip=-1.0), "train.grad_clip must be > 0 or None (no clipping), got -1.0"),
    (lambda: TrainConfig(grad_clip=0), "train.grad_clip must be > 0 or None"),
    (lambda: TrainConfig(weight_decay=-1e-4), "train.weight_decay must be >= 0, got -0.0001"),
    (lambda: TrainConfig(eval_batch_size=0), "train.eval_batch_size must be >= 1, got 0"),
    (lambda: TrainConfig(device="tpu"), "train.device must be 'auto', 'cpu', 'mps', 'cuda' or 'cuda:N', got 'tpu'"),
    (lambda: TrainConfig(lr=float("inf")), "train.lr must be a finite number, got inf"),
    (lambda: DataConfig(n_train="10"), "data.n_train must be of type int, got '10'"),
    (lambda: ExperimentConfig(data=5), "data must be a mapping of DataConfig fields, got 5"),
    (lambda: ExperimentConfig(name="a/../../b"), "name must be a relative folder inside output_dir"),
    (lambda: ExperimentConfig(name=""), "name must be a relative folder inside output_dir"),
    (lambda: _renamed(ExperimentConfig(), "../x").run_dir, "name must be a relative folder inside output_dir "
                                                           "(not empty, not absolute, no '..'), got '../x'"),
])
def test_configs_built_in_python_are_type_checked(build, message) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build()


def test_resume_conflicts_ignore_where_and_how_fast_a_run_runs() -> None:
    from mlrobust.config import resume_conflicts

    saved = ExperimentConfig().to_dict()
    moved = ExperimentConfig(train=TrainConfig(device="cpu", progress=False), data=DataConfig(num_workers=4))
    assert resume_conflicts(saved, moved) == []
    changed = ExperimentConfig(train=TrainConfig(lr=0.5))
    assert resume_conflicts(saved, changed) == ["train.lr: 0.1 -> 0.5"]
    assert resume_conflicts(None, changed) == []


@pytest.mark.parametrize("name, text, message", [
    ("dup.yaml", "train:\n  lr: 0.1\ntrain:\n  epochs: 2\n", r"dup.yaml, line 3: key 'train' appears twice \(first on line 1\)"),
    ("dup_inner.yaml", "train:\n  lr: 0.1\n  lr: 0.2\n", r"dup_inner.yaml, line 3: key 'lr' appears twice"),
    ("dup.json", '{"train": {"lr": 0.1}, "train": {"epochs": 2}}', r"dup.json, key\(s\) \['train'\] appear twice"),
    ("empty.yaml", "", r"empty.yaml is empty"),
    ("comments.yaml", "# nothing\n", r"comments.yaml is empty"),
    ("list.yaml", "- a\n- b\n", r"list.yaml: config must be a mapping"),
])
def test_bad_config_files_name_the_file_and_the_problem(tmp_path, name, text, message) -> None:
    from mlrobust.config import load_config

    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / name)


def test_unparsable_override_is_a_config_error() -> None:
    from mlrobust.config import apply_overrides

    with pytest.raises(ConfigError, match=r"override 'train.lr=\[1,2': the value '\[1,2' is not valid YAML"):
        apply_overrides(ExperimentConfig(), ["train.lr=[1,2"])


def test_resuming_with_other_epochs_is_a_conflict() -> None:
    from mlrobust.config import resume_conflicts

    longer = ExperimentConfig(train=TrainConfig(epochs=12))
    assert resume_conflicts(ExperimentConfig().to_dict(), longer) == ["train.epochs: 8 -> 12"]


def test_a_protocol_that_hides_every_label_is_refused_before_training(tmp_path) -> None:
    from mlrobust.experiments import run_experiment

    cfg = ExperimentConfig(output_dir=str(tmp_path))
    cfg.data = DataConfig(n_train=16, n_test=8, protocol="partial", protocol_args={"known": 0.0})
    with pytest.raises(ConfigError, match=r"no training label is known after the protocol 'partial' \{'known': 0.0\}"):
        run_experiment(cfg)
    assert not any(tmp_path.iterdir()), "a refused run left files behind"


def _empty_test_split(split: str, *, root=None, image_size: int = 32, n: int = 0, seed: int = 0):
    """A dataset on disk whose test split holds no image (n = 0 keeps a whole split)."""
    from mlrobust.data import ShapeScenes, TensorImages

    train = ShapeScenes(16, image_size=image_size)
    if split != "test":
        return train
    return TensorImages(torch.zeros(0, 3, image_size, image_size, dtype=torch.uint8), train.labels[:0], train.classes)


@pytest.mark.parametrize("source, message", [
    ("config", r"empty_test: the test split has no image \(data.n_test=0, data.root='/data/empty'\)"),
    ("data", r"the test split passed as data has no image"),
])
def test_an_empty_test_split_is_refused_before_training(tmp_path, monkeypatch, source, message) -> None:
    from mlrobust.data import DATASETS, DataSplits
    from mlrobust.experiments import run_experiment

    monkeypatch.setitem(DATASETS, "empty_test", _empty_test_split)
    cfg = ExperimentConfig(output_dir=str(tmp_path))
    cfg.data = DataConfig(dataset="empty_test", root="/data/empty", n_train=0, n_test=0)
    data = None if source == "config" else DataSplits(_empty_test_split("train"), _empty_test_split("test"))
    with pytest.raises(ConfigError, match=message):  # evaluated, it would write mAP NaN into metrics.json
        run_experiment(cfg, data=data)
    assert not any(tmp_path.iterdir()), "a refused run left files behind"
