"""The dataset registry: each dataset declares its ``data`` config section beside its loader.

A run's ``data`` section (and each of ``extra_domains``) is the :class:`DatasetSection` that
``name`` picks from :data:`DATASETS`: the settings every dataset has (where it lives, the image
shape, which class split is trained, validated and tested on, augmentation), the dataset's own
settings (Omniglot's ``protocol``, a folder's ``split_fractions``), the facts about it that a
config is checked against (its channels, a fixed image size) and :meth:`DatasetSection.load`,
which returns the decoded images of one class split. Adding a dataset is one section class with
:func:`register_dataset` in the loader's module.

Example (``data/omniglot.py``)::

    @register_dataset
    class OmniglotData(DatasetSection):
        name: Literal["omniglot"] = "omniglot"
        protocol: Literal["vinyals", "maml", "metadataset"] = "vinyals"
        colour: ClassVar[bool | None] = False

        loader = staticmethod(omniglot)  # called as loader(split, protocol=..., root=..., ...)
        keywords = ("protocol", "root", "splits_root", "image_size", "cache_dir", "progress")

A dataset whose loading is not one call overrides ``load(self, split, progress=False)`` instead
(a folder's seeded class split: :class:`~metamap.data.folder.FolderData`).

Older configs held one flat ``data`` section with every dataset's settings; :func:`split_data`
drops another dataset's setting at its old default and keeps it aside in a stored config
(:data:`DATA_LEGACY_DEFAULTS`), so old runs keep their fingerprints.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from metamap.data.dataset import ClassSplit, ImageClassDataset
from metamap.section import Section, own_error, register, split_section

__all__ = [
    "DATASETS",
    "DATA_LEGACY_DEFAULTS",
    "AugmentConfig",
    "DatasetSection",
    "SplitName",
    "register_dataset",
    "split_data",
]

SplitName = ClassSplit
"""A class split a run can name: ``trainval`` is train and val together, for final models."""


class AugmentConfig(Section):
    """Training-time augmentation of every support and query image (off by default).

    MetaOptNet's recipe (see :mod:`metamap.tasks.augment`): ``padding: 8`` (mini/tiered-ImageNet)
    or ``4`` (CIFAR-FS, FC100) random crop, ``flip: true``, ``jitter: 0.4``. Validation and
    test episodes are never augmented.
    """

    padding: NonNegativeInt = 0
    flip: bool = False
    jitter: float = Field(default=0.0, ge=0.0, lt=1.0)


class DatasetSection(Section):
    """The settings every dataset has; a registered subclass per dataset adds its own, its
    facts and its loader.

    ``root`` falls back to the dataset's environment variable (``METAMAP_OMNIGLOT``,
    ``METAMAP_IMAGENET``, ``METAMAP_CIFAR100``, ``METAMAP_CUB``) and ``cache_dir`` to
    ``$METAMAP_CACHE`` or ``~/.cache/metamap``. ``image_size``/``channels`` must match the
    dataset (Omniglot: any size, 1 channel; CIFAR: 32/3; ImageNet and CUB: any size, 3 channels;
    a folder: any).
    """

    name: str
    root: str | None = None
    """The dataset's source: Omniglot's folder or archives, your image folder, an ImageNet
    train folder (mini/tiered-ImageNet), the CIFAR-100 *binary* archive or its folder (CIFAR-FS,
    FC100), the CUB-200-2011 folder or archive."""
    splits_root: str | None = None
    """Split lists where the dataset needs them: Omniglot's Vinyals lists (default: beside the
    data, in the cache, or downloaded), mini/tiered-ImageNet CSVs, optional CIFAR-FS lists."""
    download: bool = False
    """Download what is missing from its official address, checked against pinned checksums:
    Omniglot's zips and Vinyals lists, the CIFAR-100 binary archive (CIFAR-FS, FC100). ImageNet
    and CUB must be given with ``root``."""
    verify_checksums: bool = True
    """Check the official files found on disk (under ``root`` or in the cache: Omniglot's zips
    and Vinyals lists, the CIFAR-100 binary archive) against the same pinned checksums as
    downloads before using them; a mismatch stops the run with a message naming the file and
    both hashes. Set it to false only for your own modified copy of an official file.
    Extracted folders and lists given by ``splits_root`` are never checked; downloads always
    are. Does not change the run's fingerprint."""
    cache_dir: str | None = None
    image_size: PositiveInt = 28
    channels: Literal[1, 3] = 1
    train_split: SplitName = "train"
    """The split episodes are trained on: ``trainval`` (train and val classes together) for
    final models, as the ProtoNets and MetaOptNet papers report (with ``eval.checkpoint:
    last``); every dataset has it."""
    val_split: SplitName = "val"
    test_split: SplitName = "test"
    augment: AugmentConfig = Field(default_factory=AugmentConfig)

    colour: ClassVar[bool | None] = None
    """The dataset's images are colour (3 channels), grey (1) or either (``None``)."""
    image_sizes: ClassVar[tuple[int, ...]] = ()
    """The only image sizes the dataset has (CIFAR: 32); empty: any size (images are resized)."""
    hierarchical: ClassVar[bool] = False
    """Class names are ``<group>/<class>`` (Omniglot's alphabets): Meta-Dataset episodes can be
    drawn within one group (``task.hierarchy``)."""

    loader: ClassVar[Callable[..., ImageClassDataset]]
    """The dataset's loader, called as ``loader(split, **keywords)``."""
    keywords: ClassVar[tuple[str, ...]] = ()
    """The keyword arguments ``loader`` takes, from :meth:`settings`."""

    def settings(self, progress: bool = False) -> dict[str, Any]:
        """The section's settings under the names loaders give them: its fields, with
        ``verify`` for ``verify_checksums`` and ``imagenet_root`` for ``root``, and
        ``progress``."""
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        aliases = {"verify": self.verify_checksums, "imagenet_root": self.root}
        return {**fields, **aliases, "progress": progress}

    def load(self, split: ClassSplit, progress: bool = False) -> ImageClassDataset:
        """The decoded (cached) images of class split ``split`` (``train``, ``val``,
        ``trainval`` or ``test``); ``progress`` shows a bar while a first decode fills the
        cache."""
        settings = self.settings(progress)
        return type(self).loader(split, **{k: settings[k] for k in self.keywords})

    def preprocessing(self) -> dict[str, Any]:
        """How an image file becomes what a network trained on this dataset takes — stored with
        every model (in its config) and applied by every feature tool: ``channels`` (1: grey,
        3: RGB), ``image_size``, the ``resample`` filter, ``invert`` (``255 - pixel``: Omniglot's
        bright strokes on black) and the per-channel ``mean``/``std`` normalisation of pixels in
        [0, 1] (``None``: none)."""
        return {
            "channels": self.channels,
            "image_size": self.image_size,
            "resample": "lanczos",
            "invert": False,
            "mean": None,
            "std": None,
        }

    def split_summary(self) -> str:
        """Which classes each split holds, in one line, where the user chose them (a folder);
        ``""`` for a dataset's standard split. May load the dataset (cached)."""
        return ""

    def split_note(self) -> str:
        """How the classes are split, for the protocol line (``""``: the dataset's one split)."""
        return ""

    @model_validator(mode="after")
    def _shape_fits(self) -> DatasetSection:
        """The image shape is one the dataset has."""
        if self.colour is not None and self.channels != (3 if self.colour else 1):
            kind, n = ("colour", 3) if self.colour else ("grey", 1)
            raise own_error(f"{self.name!r} has {kind} images: set channels {n}", "channels")
        if self.image_sizes and self.image_size not in self.image_sizes:
            c = "" if self.colour is None else f"{3 if self.colour else 1}×"
            shapes = " or ".join(f"{c}{s}×{s}" for s in self.image_sizes)
            sizes = " or ".join(map(str, self.image_sizes))
            raise own_error(
                f"{self.name!r} has {shapes} images: set image_size {sizes}", "image_size"
            )
        return self


DATASETS: dict[str, type[DatasetSection]] = {}
"""Every registered dataset's section, by ``name`` (filled as :mod:`metamap.data` imports its
loaders)."""

DATA_LEGACY_DEFAULTS: Mapping[str, Any] = {
    "protocol": "vinyals",
    "split_fractions": [0.6, 0.2, 0.2],
}
"""The dataset-specific settings of the one flat ``data`` section of older versions, at their
defaults: another dataset's setting at this value is dropped from a config, and a stored run's
fingerprint counts these (:meth:`metamap.train.RunConfig.fingerprint`)."""


def register_dataset(section: type[DatasetSection]) -> type[DatasetSection]:
    """Class decorator: make ``section`` the ``data`` section of the dataset it names."""
    return register(DATASETS, section, "dataset")


def split_data(
    data: Mapping[str, Any], keep: bool, where: str = "data"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(section, aside)``: a ``data`` section split into the settings of the dataset it names
    and those of others (:func:`~metamap.section.split_section`)."""
    return split_section(
        data, DATASETS, DATA_LEGACY_DEFAULTS, where=where, default_name="omniglot", keep=keep
    )
