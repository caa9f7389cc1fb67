"""From images to model inputs: one preprocessing path for training, evaluation and prediction.

The image processor saved with the model (resize, rescale, normalise) turns every image into `pixel_values`. Training
adds augmentation around it: layout randomisation, RandAugment (and an optional flip) on the resized uint8 image, then
the processor's rescale and normalisation (the image is resized once, by the augmentation), and a cutout
(RandomErasing) on the normalised tensor.
"""

import contextlib
from collections import Counter

import torch

from .loading import open_image, to_rgb
from .splits import PreparedSplit, check_sample


def training_augmentation(
    image_size: int,
    randaugment: bool = True,
    magnitude: int = 9,
    horizontal_flip: bool = False,
    layout_randomization=None,
):
    """PIL image -> augmented uint8 tensor `(3, image_size, image_size)`, as the official recipe: square resize, then
    RandAugment (torchvision's). Not in the official recipe: the flip, and `layout_randomization` (a transform of
    uint8 tensors, e.g. `mosaics.layout_augmentation.LayoutRandomization`: a new background, tint, size, noise for
    the same objects) before RandAugment."""
    from torchvision.transforms import v2

    steps = [v2.PILToTensor(), v2.Resize((image_size, image_size), antialias=True)]
    if layout_randomization is not None:
        steps.append(layout_randomization)
    if horizontal_flip:
        steps.append(v2.RandomHorizontalFlip())
    if randaugment:
        steps.append(v2.RandAugment(num_ops=2, magnitude=magnitude))
    return v2.Compose(steps)


def cutout(probability: float):
    """A cutout that really erases (the official one never did): a random patch of the normalised tensor set to 0,
    the mean colour."""
    from torchvision.transforms import v2

    return v2.RandomErasing(p=probability, scale=(0.02, 0.2), ratio=(0.5, 2.0), value=0)


def processor_at_size(processor, size: int | None, option: str = "--inference_image_size"):
    """`processor` resizing to a `size` x `size` square instead (None: `processor` itself): the resolution a trained
    model is evaluated, saved and run at. `option` names the setting in the error for a size too small."""
    if size is None or (processor.size.height, processor.size.width) == (size, size):
        return processor
    if size < 32:
        raise ValueError(f"{option} must be at least 32 pixels (the backbone's stride), got {size}.")
    return type(processor).from_dict({**processor.to_dict(), "size": {"height": size, "width": size}})


def pixel_values(processor, image) -> torch.Tensor:
    """`(3, height, width)` model input of one image through the image processor."""
    return processor(images=image, return_tensors="pt")["pixel_values"][0]


def normalized_pixel_values(processor, image: torch.Tensor) -> torch.Tensor:
    """The processor's output for a uint8 `(3, height, width)` tensor: its rescale and normalisation directly when
    the tensor already has the processor's size (its resize would change nothing), the whole processor otherwise."""
    size = getattr(processor, "size", None)
    if not (
        isinstance(image, torch.Tensor)
        and image.dtype == torch.uint8
        and image.ndim == 3
        and getattr(size, "height", None) == image.shape[1]
        and getattr(size, "width", None) == image.shape[2]
        and processor.do_rescale
        and processor.do_normalize
    ):
        return pixel_values(processor, image)
    mean = torch.tensor(processor.image_mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(processor.image_std, dtype=torch.float32).view(-1, 1, 1)
    return (image.float() * processor.rescale_factor - mean) / std


class ImagePreparation:
    """One image as the model takes it: through `processor`, with `augmentation` (a PIL -> uint8 tensor transform)
    before and a cutout after when training, and before those an optional `recomposition` (an
    `ObjectRecomposition`, which also changes the labels). With `augmentation_seed`, the random draws of sample
    `index` in `epoch` come from their own generator seeded by (seed, epoch, index): the same image gets the same
    augmentation whatever the worker count, and a run resumed from a checkpoint sees exactly what the uninterrupted
    run saw."""

    def __init__(
        self, processor, augmentation=None, cutout_probability: float = 0.0, augmentation_seed: int | None = None, recomposition=None
    ):
        self.processor = processor
        self.augmentation = augmentation
        self.cutout = cutout(cutout_probability) if cutout_probability > 0 else None
        self.augmentation_seed = augmentation_seed
        self.recomposition = recomposition

    def _pixel_values(self, image) -> torch.Tensor:
        if self.augmentation is None:
            return pixel_values(self.processor, image)
        pixels = normalized_pixel_values(self.processor, self.augmentation(to_rgb(image)))
        return self.cutout(pixels) if self.cutout is not None else pixels

    def _seeded(self, index: int, epoch: int, epoch_size: int):
        if self.augmentation_seed is None:
            return contextlib.nullcontext()

        @contextlib.contextmanager
        def seeded():
            with torch.random.fork_rng(devices=[]):
                # the CPU generator only: `torch.manual_seed` also queues a seed for every accelerator, with its stack
                torch.default_generator.manual_seed(self.augmentation_seed + epoch * epoch_size + index)
                yield

        return seeded()

    def __call__(self, raw_image, index: int, epoch: int, epoch_size: int) -> torch.Tensor:
        with self._seeded(index, epoch, epoch_size):
            return self._pixel_values(open_image(raw_image))

    def with_labels(self, raw_image, labels: torch.Tensor, index: int, epoch: int, epoch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(pixel values, labels) of sample `index`: the labels change only when the recomposition changes the image."""
        with self._seeded(index, epoch, epoch_size):
            image = open_image(raw_image)
            if self.recomposition is not None:
                image, labels = self.recomposition(image, labels, index)
            return self._pixel_values(image), labels


class MultiLabelImageDataset(torch.utils.data.Dataset):
    """`pixel_values` and multi-hot `labels` for each sample of a prepared split (see `ImagePreparation` for the
    augmentation arguments). Set `epoch` before each epoch (`training.callbacks.AugmentationEpochCallback` does)."""

    def __init__(
        self,
        split: PreparedSplit,
        image_column: str,
        processor,
        augmentation=None,
        cutout_probability: float = 0.0,
        augmentation_seed: int | None = None,
        recomposition=None,
    ):
        self.dataset = split.dataset
        self.labels = torch.from_numpy(split.labels)
        self.image_column = image_column
        self.prepare = ImagePreparation(processor, augmentation, cutout_probability, augmentation_seed, recomposition)
        self.augmentation_seed = augmentation_seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        raw_image = self.dataset[index][self.image_column]
        pixels, labels = self.prepare.with_labels(raw_image, self.labels[index], index, self.epoch, len(self))
        return {"pixel_values": pixels, "labels": labels}


class StreamingMultiLabelDataset(torch.utils.data.IterableDataset):
    """Training samples from a streamed `datasets.IterableDataset` (a Hub dataset read as it downloads, nothing
    written to disk): each sample is checked as it arrives (a bad one stops the run naming it, or with
    `skip_bad_samples` is skipped and counted in `skipped`), then prepared as `MultiLabelImageDataset` does. With
    `shuffle_buffer`, the stream is shuffled per epoch; DataLoader workers read disjoint parts of it."""

    def __init__(
        self,
        stream,
        encoder,
        image_column: str,
        label_column: str,
        processor,
        augmentation=None,
        cutout_probability: float = 0.0,
        augmentation_seed: int | None = None,
        skip_bad_samples: bool = False,
        shuffle_buffer: int = 1000,
    ):
        self.stream = stream.shuffle(seed=augmentation_seed or 0, buffer_size=shuffle_buffer) if shuffle_buffer else stream
        self.encoder, self.image_column, self.label_column = encoder, image_column, label_column
        self.prepare = ImagePreparation(processor, augmentation, cutout_probability, augmentation_seed)
        self.augmentation_seed = augmentation_seed
        self.skip_bad_samples = skip_bad_samples
        self.skipped = Counter()
        self.epoch = 0

    def __iter__(self):
        from datasets.distributed import split_dataset_by_node

        from .labels import BadSampleError

        self.stream.set_epoch(self.epoch)
        stream, worker = self.stream, torch.utils.data.get_worker_info()
        if worker is not None and worker.num_workers > 1:
            stream = split_dataset_by_node(stream, rank=worker.id, world_size=worker.num_workers)
        for index, example in enumerate(stream):
            vector, problem, reason = check_sample(self.encoder, example[self.label_column], example[self.image_column])
            if problem is not None:
                if not self.skip_bad_samples:
                    raise BadSampleError(
                        f"streamed train sample {index}: {problem}. Fix the data, or pass --skip_bad_samples to skip "
                        "such samples (they are counted and reported)."
                    )
                self.skipped[reason] += 1
                continue
            pixels = self.prepare(example[self.image_column], index, self.epoch, 1_000_003)
            yield {"pixel_values": pixels, "labels": torch.from_numpy(vector)}


def collate_multilabel(examples: list[dict]) -> dict:
    return {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.stack([example["labels"] for example in examples]),
    }
