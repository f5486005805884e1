"""Datasets for training and evaluation: LMDBs (several, multi-row aware) and
labelled folders, plus the resize/pad policy that turns images into tensors."""

from ocrkit.data.datasets import FolderDataset, LmdbDataset, Sample, open_dataset
from ocrkit.data.transforms import ResizePad

__all__ = ["FolderDataset", "LmdbDataset", "ResizePad", "Sample", "open_dataset"]
