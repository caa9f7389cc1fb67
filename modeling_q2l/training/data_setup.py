"""The datasets a training run feeds the Trainer: the training split with its augmentation (stored or streamed) and
the evaluation split as it is."""

from ..data.transforms import MultiLabelImageDataset, StreamingMultiLabelDataset, training_augmentation
from .options import TrainingOptions


def training_datasets(
    train_source, eval_split, preparer, processor, image_size: int, training_args: TrainingOptions, streaming: bool, eval_processor=None
):
    """(train dataset, evaluation dataset). `train_source` is the prepared training split, or the stream when
    `streaming`; the augmentation follows `training_args` (RandAugment, flip, layout randomisation, object
    recomposition, cutout), seeded per sample by `training_args.seed`. The evaluation split goes through
    `eval_processor` (default: `processor`), which may resize to another resolution than training's."""
    layouts = None
    if training_args.layout_randomization > 0:
        from ..mosaics.layout_augmentation import LayoutRandomization

        layouts = LayoutRandomization(training_args.layout_randomization)
    augmented = dict(
        augmentation=training_augmentation(
            image_size, training_args.randaugment, training_args.randaugment_magnitude, training_args.horizontal_flip, layouts
        ),
        cutout_probability=training_args.cutout_probability,
        augmentation_seed=training_args.seed,
    )
    recomposition = training_args.object_recomposition
    if streaming:
        if recomposition > 0:
            raise ValueError(
                "--object_recomposition draws a second training image at random, which a stream cannot give: drop "
                "--streaming (the split is then read from disk), or pass --object_recomposition 0."
            )
        train_dataset = StreamingMultiLabelDataset(
            train_source, preparer.encoder, preparer.image_column, preparer.label_column, processor,
            skip_bad_samples=preparer.skip_bad_samples, **augmented,
        )  # fmt: skip
    else:
        if recomposition > 0:
            from ..mosaics.object_recomposition import ObjectRecomposition

            augmented["recomposition"] = ObjectRecomposition(train_source.dataset, preparer.image_column, preparer.encoder, recomposition)
        train_dataset = MultiLabelImageDataset(train_source, preparer.image_column, processor, **augmented)
    return train_dataset, MultiLabelImageDataset(eval_split, preparer.image_column, eval_processor or processor)
