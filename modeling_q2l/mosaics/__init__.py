"""The embedded demo dataset's own home: Fashion-MNIST mosaics (`mosaic.py`), the command that builds a mosaic set
(`builder.py`), its held-out layouts (`layouts.py`) and the two augmentations made for synthetic layouts like it
(`layout_augmentation.py`, `object_recomposition.py`). Nothing a user's own dataset goes through lives here: the
loaders, labels and transforms every dataset uses are in `data/`."""
