"""The backbone families of the paper's models, one file each: a file here that ends with `register_family(...)`
is found and registered when the zoo is imported (nothing else names it), like a timm model file."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
