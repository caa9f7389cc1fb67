"""From images to model inputs: one preprocessing path for training, evaluation and prediction.

The image processor saved with the model (resize, rescale, normalise) turns every image into `pixel_values`. Training
adds augmentation around it: RandAugment (and an optional flip) on the resized uint8 image before the processor,
and a cutout (RandomErasing) on the normalised tensor after it.
"""

import torch

from .loading import PreparedSplit, open_image, to_rgb


def training_augmentation(image_size: int, randaugment: bool = True, magnitude: int = 9, horizontal_flip: bool = False):
    """PIL image -> augmented uint8 tensor `(3, image_size, image_size)`, as the official recipe: square resize, then
    RandAugment (torchvision's); the flip is not in the official recipe."""
    from torchvision.transforms import v2

    steps = [v2.PILToTensor(), v2.Resize((image_size, image_size), antialias=True)]
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


def pixel_values(processor, image) -> torch.Tensor:
    """`(3, height, width)` model input of one image through the image processor."""
    return processor(images=image, return_tensors="pt")["pixel_values"][0]


class MultiLabelImageDataset(torch.utils.data.Dataset):
    """`pixel_values` and multi-hot `labels` for each sample of a prepared split.

    Every image goes through `processor`; with `augmentation` (a PIL -> uint8 tensor transform) and `cutout_probability`
    it is augmented before and erased after. With `augmentation_seed`, each sample's random augmentation is drawn from
    its own generator seeded by (seed, epoch, index): the same image gets the same augmentation whatever the worker
    count, and a run resumed from a checkpoint sees exactly what the uninterrupted run saw. Set `epoch` before each
    epoch (`training.callbacks.AugmentationEpochCallback` does).
    """

    def __init__(
        self,
        split: PreparedSplit,
        image_column: str,
        processor,
        augmentation=None,
        cutout_probability: float = 0.0,
        augmentation_seed: int | None = None,
    ):
        self.dataset = split.dataset
        self.labels = torch.from_numpy(split.labels)
        self.image_column = image_column
        self.processor = processor
        self.augmentation = augmentation
        self.cutout = cutout(cutout_probability) if cutout_probability > 0 else None
        self.augmentation_seed = augmentation_seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def _pixel_values(self, image) -> torch.Tensor:
        if self.augmentation is None:
            return pixel_values(self.processor, image)
        pixels = pixel_values(self.processor, self.augmentation(to_rgb(image)))
        return self.cutout(pixels) if self.cutout is not None else pixels

    def __getitem__(self, index: int) -> dict:
        image = open_image(self.dataset[index][self.image_column])
        if self.augmentation_seed is None:
            pixels = self._pixel_values(image)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.augmentation_seed + self.epoch * len(self) + index)
                pixels = self._pixel_values(image)
        return {"pixel_values": pixels, "labels": self.labels[index]}


def collate_multilabel(examples: list[dict]) -> dict:
    return {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.stack([example["labels"] for example in examples]),
    }
