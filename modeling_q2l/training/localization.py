"""Where the main job's final model looks: the localisation of its label queries on an extra split with boxes."""

import logging

from ..evaluation.evaluate import localization_for_split

logger = logging.getLogger(__name__)


def check_localization_split(data_args) -> None:
    """Before training: the localisation split must be one of the extra evaluation splits."""
    name = data_args.localization_split_name
    if name and name not in (data_args.extra_eval_split_names or []):
        raise ValueError(
            f"--localization_split_name {name}: pass it in --extra_eval_split_names too (got {data_args.extra_eval_split_names})."
        )


def localization_on(model, processor, preparer, extra_splits: dict, name: str | None) -> dict | None:
    """Where the final model's label queries look on the extra split `name` (pointing game, attention mass in boxes,
    chance; `evaluation.evaluate.localization_for_split`); None without `name` or a Query2Label head, and, with a
    warning, where the dataset has no such split or it has no boxes."""
    if not name or model.config.classifier_head != "query2label":
        return None
    if name not in extra_splits or "objects" not in extra_splits[name].features:
        logger.warning("No localisation: the dataset has no split %r with boxes (an `objects` column).", name)
        return None
    split = preparer.prepare(extra_splits[name], split_name=name)
    label_names = [model.config.id2label[index] for index in range(model.config.num_labels)]
    model.eval()
    summary = localization_for_split(model, processor, split, preparer.encoder, preparer.image_column, label_names, progress=False)
    logger.info("%s: the label queries point inside their boxes %.1f%% of the time (chance %.1f%%).", name, 100 * summary["pointing_game"], 100 * summary["chance"])
    return {"split": name, **summary}
