import math

import numpy as np
import pytest
import torch
from helpers import tiny_config
from transformers import TrainerCallback

from modeling_q2l import Query2LabelForMultiLabelClassification
from modeling_q2l.cli.arguments import Query2LabelTrainingArguments
from modeling_q2l.data.transforms import collate_multilabel
from modeling_q2l.training.callbacks import (
    ADAPTIVE_ASYMMETRY_STATE_NAME,
    EMA_WEIGHTS_NAME,
    AdaptiveAsymmetryCallback,
)
from modeling_q2l.zoo.architecture import loss_settings
from modeling_q2l.training.trainer import Query2LabelTrainer


class TensorDataset(torch.utils.data.Dataset):
    def __init__(self, count=8, num_labels=5, seed=0):
        generator = torch.Generator().manual_seed(seed)
        self.pixels = torch.randn(count, 3, 64, 64, generator=generator)
        self.labels = (torch.rand(count, num_labels, generator=generator) < 0.4).float()

    def __len__(self):
        return len(self.pixels)

    def __getitem__(self, index):
        return {"pixel_values": self.pixels[index], "labels": self.labels[index]}


class GradientRecorder(TrainerCallback):
    def __init__(self):
        self.gradients = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.gradients = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def deterministic_model():
    torch.manual_seed(0)
    # Frozen BatchNorm and no dropout: micro-batches then see exactly what one big batch sees.
    return Query2LabelForMultiLabelClassification(tiny_config(freeze_backbone_batch_norm=True, dropout=0.0, attention_dropout=0.0))


def make_trainer(tmp_path, model=None, dataset=None, **kwargs):
    trainer_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in ("ema_decay", "exempt_norm_and_bias_from_decay", "backbone_learning_rate", "adaptive_asymmetry")}
    args = Query2LabelTrainingArguments(  # the recipe's optimizer and one-cycle schedule
        output_dir=str(tmp_path),
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        use_cpu=True,
        dataloader_drop_last=False,
        **kwargs,
    )
    dataset = dataset or TensorDataset()
    return Query2LabelTrainer(
        model=model or deterministic_model(), args=args, train_dataset=dataset, eval_dataset=dataset,
        data_collator=collate_multilabel, **trainer_kwargs,
    )


@pytest.mark.slow
@pytest.mark.parametrize("batch_size,accumulation", [(4, 2), (3, 3)])
def test_gradient_accumulation_matches_one_big_batch(tmp_path, batch_size, accumulation):
    def gradients(batch, steps):
        recorder = GradientRecorder()
        trainer = make_trainer(tmp_path / f"{batch}-{steps}", per_device_train_batch_size=batch, gradient_accumulation_steps=steps, max_steps=1)
        trainer.add_callback(recorder)
        trainer.train()
        return recorder.gradients

    reference = gradients(8, 1)
    accumulated = gradients(batch_size, accumulation)  # 3 + 3 + 2 images when uneven
    assert reference.keys() == accumulated.keys()
    for name in reference:
        torch.testing.assert_close(accumulated[name], reference[name], rtol=1e-4, atol=1e-6, msg=name)


def test_loss_is_the_config_asl_per_image(tmp_path):
    trainer = make_trainer(tmp_path)
    batch = collate_multilabel([trainer.train_dataset[i] for i in range(4)])
    model = trainer.model.eval()
    loss = trainer.compute_loss(model, batch)
    torch.testing.assert_close(loss, model(**batch).loss)
    halves = [collate_multilabel([trainer.train_dataset[i] for i in idx]) for idx in ([0, 1], [2, 3])]
    # The Trainer counts label entries (4 images x 5 labels) over the accumulated batch; the model divides by images.
    summed = sum(trainer.compute_loss(model, half, num_items_in_batch=4 * 5) for half in halves)
    torch.testing.assert_close(summed, loss)
    assert trainer.model_accepts_loss_kwargs


def test_no_private_trainer_method_is_overridden():
    from transformers import Trainer

    overridden = [
        name for name in vars(Query2LabelTrainer) if name.startswith("_") and not name.startswith("__") and hasattr(Trainer, name)
    ]
    assert overridden == []
    public = [name for name in vars(Query2LabelTrainer) if not name.startswith("_") and hasattr(Trainer, name)]
    assert sorted(public) == ["compute_loss", "create_optimizer", "create_scheduler", "evaluate", "evaluation_loop", "log", "train"]


def test_optimizer_decays_everything_unless_asked(tmp_path):
    trainer = make_trainer(tmp_path, weight_decay=0.01)
    groups = trainer.create_optimizer().param_groups
    assert [g["weight_decay"] for g in groups] == [0.01]
    trainer = make_trainer(tmp_path, weight_decay=0.01, exempt_norm_and_bias_from_decay=True, backbone_learning_rate=1e-5, learning_rate=1e-3)
    groups = trainer.create_optimizer().param_groups
    assert sorted({g["weight_decay"] for g in groups}) == [0.0, 0.01]
    assert sorted({g["lr"] for g in groups}) == [1e-5, 1e-3]
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert id(trainer.model.model.decoder.layer_norm.weight) in no_decay
    assert id(trainer.model.model.decoder.layers[0].cross_attn.q_proj.bias) in no_decay
    assert id(trainer.model.model.decoder.layers[0].cross_attn.q_proj.weight) not in no_decay


def test_one_cycle_schedule_peaks_after_a_fifth(tmp_path):
    trainer = make_trainer(tmp_path, learning_rate=1e-3)
    optimizer = trainer.create_optimizer()
    scheduler = trainer.create_scheduler(100, optimizer)
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert int(np.argmax(rates)) == 20 - 1 or int(np.argmax(rates)) == 20
    assert max(rates) == pytest.approx(1e-3) and rates[-1] < 1e-5 and rates[0] < 1e-4


@pytest.mark.slow
def test_ema_is_evaluated_checkpointed_and_restored(tmp_path):
    trainer = make_trainer(tmp_path, ema_decay=0.9, per_device_train_batch_size=4, max_steps=2, save_steps=2, save_strategy="steps")
    trainer.train()
    metrics = trainer.evaluate()
    assert "eval_mAP" in metrics and "eval_ema_mAP" in metrics
    checkpoint = tmp_path / "checkpoint-2"
    assert (checkpoint / EMA_WEIGHTS_NAME).is_file()
    ema_state = {k: v.clone() for k, v in trainer.ema.module.state_dict().items()}
    model_state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert any(not torch.equal(ema_state[k], model_state[k]) for k in ema_state)
    restored = make_trainer(tmp_path / "other", ema_decay=0.9)
    restored.ema.load_checkpoint(str(checkpoint))
    for key, value in restored.ema.module.state_dict().items():
        assert torch.equal(value, ema_state[key])
    prediction, choice = trainer.predict_with_better_weights(trainer.eval_dataset)
    assert choice in ("ema", "regular") and prediction.predictions.shape == (8, 5)
    expected = ema_state if choice == "ema" else model_state
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_adaptive_asymmetry_moves_gamma_neg_toward_the_target_gap(tmp_path):
    model = deterministic_model()
    start = model.criterion.gamma_neg
    callback = AdaptiveAsymmetryCallback(start, target_gap=0.5, step_size=2.0)
    logits = torch.tensor([[2.0, -2.0]])
    callback.observe(logits, torch.tensor([[1.0, 0.0]]))  # gap = sigmoid(2) - sigmoid(-2) = 0.7616
    gap = torch.sigmoid(torch.tensor(2.0)).item() - torch.sigmoid(torch.tensor(-2.0)).item()
    callback.on_step_end(None, None, None, model=model)
    assert model.criterion.gamma_neg == pytest.approx(start + 2.0 * (gap - 0.5))
    callback.observe(logits, torch.tensor([[0.0, 1.0]]))  # gap = -0.7616: gamma_neg shrinks, not below 0
    callback.on_step_end(None, None, None, model=model)
    assert model.criterion.gamma_neg == pytest.approx(max(0.0, start + 2.0 * (gap - 0.5) + 2.0 * (-gap - 0.5)))
    assert model.config.asl_gamma_neg == start  # the config keeps the starting value


@pytest.mark.slow
def test_adaptive_asymmetry_inside_training(tmp_path):
    trainer = make_trainer(
        tmp_path, adaptive_asymmetry=(0.9, 5.0), per_device_train_batch_size=4, max_steps=2, logging_steps=1,
        save_strategy="steps", save_steps=2,
    )
    start = trainer.model.config.asl_gamma_neg
    trainer.train()
    assert trainer.model.criterion.gamma_neg < start  # an untrained model's gap is far below 0.9
    logged = [entry for entry in trainer.state.log_history if "gamma_neg" in entry]
    assert logged and not math.isnan(logged[0]["probability_gap"])
    assert (tmp_path / "checkpoint-2" / ADAPTIVE_ASYMMETRY_STATE_NAME).is_file()
    resumed = make_trainer(tmp_path / "other", adaptive_asymmetry=(0.9, 5.0))
    resumed.adaptive_asymmetry.load_checkpoint(str(tmp_path / "checkpoint-2"))
    assert resumed.adaptive_asymmetry.gamma_neg == trainer.model.criterion.gamma_neg


def test_loss_settings():
    assert loss_settings("bce", 4, 1, 0.05) == {"asl_gamma_neg": 0.0, "asl_gamma_pos": 0.0, "asl_clip": 0.0}
    assert loss_settings("focal", 4, 1, 0.05, focal_gamma=3) == {"asl_gamma_neg": 3, "asl_gamma_pos": 3, "asl_clip": 0.0}
    assert loss_settings("asl", 4, 1, 0.05)["asl_clip"] == 0.05
    with pytest.raises(ValueError, match="asl, focal or bce"):
        loss_settings("hinge", 4, 1, 0.05)
