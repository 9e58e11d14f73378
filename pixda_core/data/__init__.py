"""Datasets in their real layouts, few-shot splits, and the embedded toy benchmark."""

from .cityscapes import Cityscapes
from .common import MEAN_BGR, read_list_file, release_normalize, write_list_file
from .gta5 import GTA5
from .splits import TRAIN_CITIES, VAL_CITIES, draw_split, load_split, read_split, write_split
from .synthia import Synthia

__all__ = [
    "GTA5",
    "Synthia",
    "Cityscapes",
    "MEAN_BGR",
    "release_normalize",
    "TRAIN_CITIES",
    "VAL_CITIES",
    "draw_split",
    "load_split",
    "read_split",
    "write_split",
    "read_list_file",
    "write_list_file",
]
