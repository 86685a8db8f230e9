"""Freezing a backbone's first stages (model.freeze_at)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlrobust.config import ConfigError, ExperimentConfig
from mlrobust.models import FrozenBatchNorm2d, create_backbone, create_model, freeze_stages


def test_frozen_batch_norm_is_the_batch_norm_in_eval_mode() -> None:
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(5)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2), bn.bias.normal_(), bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 3)
    x = torch.randn(4, 5, 3, 3)
    frozen = FrozenBatchNorm2d(bn)
    assert torch.equal(frozen(x), bn.eval()(x))  # the same kernel, so the same bits
    assert not list(frozen.parameters())
    # a frozen model's state dict reads like the original's (less the step counter)
    assert list(frozen.state_dict()) == [k for k in bn.state_dict() if k != "num_batches_tracked"]


def test_frozen_batch_norm_needs_statistics_and_affine() -> None:
    with pytest.raises(ValueError, match="track_running_stats=True, affine=True"):
        FrozenBatchNorm2d(nn.BatchNorm2d(3, affine=False))


@pytest.mark.parametrize(("freeze_at", "frozen"), [(0, []), (1, [0]), (2, [0, 1, 2]), (3, [0, 1, 2, 3, 4]),
                                                    (4, list(range(7)))])
def test_freeze_at_fixes_the_stem_and_the_first_stages(freeze_at: int, frozen: list[int]) -> None:
    body = create_backbone("cnn_s").body
    net = freeze_stages(create_backbone("cnn_s"), freeze_at)
    for i, block in enumerate(net.body):
        assert all(p.requires_grad != (i in frozen) for p in block.parameters()), i
        assert isinstance(block[1], FrozenBatchNorm2d) == (i in frozen), i
    assert len(body) == len(net.body)


def test_a_training_step_leaves_the_frozen_stages_as_they_were() -> None:
    torch.manual_seed(0)
    model = create_model("cnn_s", 4, freeze_at=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()
    loss = F.binary_cross_entropy_with_logits(model(torch.randn(8, 3, 32, 32)), torch.ones(8, 4))
    loss.backward()
    opt.step()
    after = model.state_dict()
    for k in before:
        moved = not torch.equal(before[k], after[k])
        if k.startswith(("backbone.body.0.", "backbone.body.1.", "backbone.body.2.")):
            assert not moved, k
        elif k.endswith(("0.weight", "running_mean")):  # the later stages' convs and batch norms
            assert moved, k


def test_freeze_at_on_a_timm_resnet_follows_its_feature_levels() -> None:
    net = freeze_stages(create_backbone("resnet18"), 2)  # stem + layer1, as Detectron2's FREEZE_AT=2
    trainable = {n.split(".")[1] for n, p in net.named_parameters() if p.requires_grad}
    frozen = {n.split(".")[1] for n, p in net.named_parameters() if not p.requires_grad}
    assert frozen == {"conv1", "layer1"} and trainable == {"layer2", "layer3", "layer4"}
    assert isinstance(net.model.bn1, FrozenBatchNorm2d) and isinstance(net.model.layer2[0].bn1, nn.BatchNorm2d)


def test_freeze_at_refuses_what_it_cannot_do() -> None:
    with pytest.raises(ValueError, match=r"model.freeze_at must be in 0..4 for SmallCNN \(stem \+ 3 stages\), got 5"):
        freeze_stages(create_backbone("cnn_s"), 5)
    with pytest.raises(ValueError, match="does not say where its stages start"):
        freeze_stages(nn.Sequential(nn.Conv2d(3, 4, 3)), 1)
    with pytest.raises(ConfigError, match="model.freeze_at"):
        ExperimentConfig.from_dict({"model": {"freeze_at": -1}})


def test_a_run_with_freeze_at_trains_only_the_later_stages() -> None:
    from mlrobust.experiments import run_experiment
    from mlrobust.pretrained import load_shipped

    cfg = ExperimentConfig.from_dict({"data": {"n_train": 64, "n_test": 32},
                                      "model": {"weights": "cnn_s-objects32", "freeze_at": 2},
                                      "train": {"epochs": 1, "batch_size": 32}})
    trained = run_experiment(cfg, write=False).trainer.module.backbone.body
    shipped = load_shipped("cnn_s-objects32")
    assert torch.equal(trained[1][0].weight, shipped.body[1][0].weight)
    assert not torch.equal(trained[3][0].weight, shipped.body[3][0].weight)
