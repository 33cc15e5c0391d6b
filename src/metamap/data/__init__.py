"""Data: image datasets for few-shot classification, decoded once into a memory-mapped cache,
and MovieLens ratings for cold-start recommendation (:func:`load_movielens`).

Every loader returns an :class:`ImageClassDataset` — ``images (N, C, H, W)`` uint8 (a read-only
memory map of the cache, or a small in-memory selection of it), ``labels (N,)`` int64, class
names and source file names — that episode samplers index into:

=====================================  ==============================================  ==========
loader                                 dataset                                         images
=====================================  ==============================================  ==========
:func:`image_folder`                   your own ``root/<class>/<image>`` folder        any
:func:`omniglot`                       Omniglot (Lake et al. 2015), Vinyals / MAML /   1×28×28
                                       Lake splits, rotations as extra classes
:func:`omniglot_one_shot_runs`         Lake et al.'s 20 one-shot runs                  1×28×28
:func:`cifar_fs`, :func:`fc100`        CIFAR-FS (Bertinetto et al. 2019), FC100        3×32×32
                                       (Oreshkin et al. 2018), from CIFAR-100 binary
:func:`mini_imagenet`                  mini-ImageNet (Ravi & Larochelle 2017 split)    3×84×84
:func:`tiered_imagenet`                tiered-ImageNet (Ren et al. 2018)               3×84×84
:func:`cub`                            CUB-200-2011, Chen et al. (2019) split          3×84×84
:func:`from_torch_dataset`             any PyTorch ``Dataset`` of ``(image, label)``   any
                                       pairs (``torchvision.datasets.ImageFolder``, …)
=====================================  ==============================================  ==========

Decoding happens once per source and preprocessing (:mod:`metamap.data.cache`; cache folder:
``cache_dir=``, else ``$METAMAP_CACHE``, else ``~/.cache/metamap``). A missing, corrupt or
mislaid source raises :class:`metamap.errors.DataError` saying what is wrong and how to fix it.
Building blocks: :func:`download_url` (resumable, checked against a pinned sha256 and/or MD5),
:func:`extract_archive` (refuses members escaping the target), :func:`decode_image`.

Each loader's module also registers the dataset's ``data`` config section
(:mod:`metamap.data.registry`, :data:`DATASETS`): its settings, its facts and its ``load``.
"""

from metamap.data.archive import extract_archive, is_archive
from metamap.data.cache import cached_images, resolve_cache_dir
from metamap.data.cifar import CIFAR_FS_SPLITS, FC100_SPLITS, cifar_fs, fc100, read_cifar100_binary
from metamap.data.cub import cub, cub_split_classes
from metamap.data.dataset import ImageClassDataset
from metamap.data.download import download_url
from metamap.data.folder import image_folder
from metamap.data.images import decode_image, list_images
from metamap.data.miniimagenet import mini_imagenet, tiered_imagenet
from metamap.data.movielens import (
    MAX_ITEM_ID,
    MOVIELENS_ENV,
    MovieLens,
    load_movielens,
)
from metamap.data.omniglot import OmniglotSplit, omniglot, omniglot_images, omniglot_root
from metamap.data.omniglot_runs import OneShotRun, omniglot_one_shot_runs, run_images_seen
from metamap.data.registry import (
    DATASETS,
    AugmentConfig,
    DatasetSection,
    register_dataset,
)
from metamap.data.torch_dataset import TorchData, from_torch_dataset

__all__ = [
    "CIFAR_FS_SPLITS",
    "DATASETS",
    "FC100_SPLITS",
    "MAX_ITEM_ID",
    "MOVIELENS_ENV",
    "AugmentConfig",
    "DatasetSection",
    "ImageClassDataset",
    "MovieLens",
    "OmniglotSplit",
    "OneShotRun",
    "TorchData",
    "cached_images",
    "cifar_fs",
    "cub",
    "cub_split_classes",
    "decode_image",
    "download_url",
    "extract_archive",
    "fc100",
    "from_torch_dataset",
    "image_folder",
    "is_archive",
    "list_images",
    "load_movielens",
    "mini_imagenet",
    "omniglot",
    "omniglot_images",
    "omniglot_one_shot_runs",
    "omniglot_root",
    "read_cifar100_binary",
    "register_dataset",
    "resolve_cache_dir",
    "run_images_seen",
    "tiered_imagenet",
]
