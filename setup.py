"""ocrkit: train, compress and ship text recognizers, Chinese first."""

import re
from pathlib import Path

from setuptools import find_packages, setup

version = re.search(r'__version__ = "([^"]+)"', Path("ocrkit/__init__.py").read_text()).group(1)

setup(
    name="ocrkit",
    version=version,
    description="Train, compress and ship text recognizers, Chinese first.",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["ocrkit", "ocrkit.*", "data_tools", "data_tools.*"]),
    install_requires=[
        "torch>=2.1",
        "click>=8.1",
        "rich>=13",
        "numpy>=1.24",
        "pillow>=10.1",
        "lmdb>=1.4",
        "editdistance>=0.6",
        # jieba carries a 350k-word frequency dictionary: the embedded default corpus.
        "jieba>=0.42",
    ],
    extras_require={
        # Three Chinese font designs as pip packages (no apt): Noto Sans CJK (OFL),
        # WenQuanYi Micro Hei (Apache-2.0), Noto Serif SC (a Song design, OFL).
        # Pinned: these are repackagings by third parties, checked file by file.
        "fonts": ["noto-cjk-sans-otc==0.0.1", "paperang-p2-fonts-cjk==0.1.0",
                  "pylopdf-fonts-zh-cn==0.1.1"],
        # ONNX export (`ocrkit export`) and its --verify against onnxruntime.
        "export": ["onnx>=1.15", "onnxruntime>=1.17"],
        # rapidocr-onnxruntime: the export profile is checked against RapidOCR itself
        # (pinned: the test drives its TextRecognizer class directly).
        "test": ["pytest>=7", "onnx>=1.15", "onnxruntime>=1.17", "rapidocr-onnxruntime==1.4.4"],
    },
    entry_points={
        "console_scripts": ["ocrkit = ocrkit.cli:main"],
        # Built-in components use the same entry points a plugin would.
        "ocrkit.backbones": [
            "vgg16-cut = ocrkit.models.backbones.vgg:vgg16_cut",
            "vgg-small = ocrkit.models.backbones.vgg:vgg_small",
            "resnet31 = ocrkit.models.backbones.resnet:resnet31",
            "mobilenetv3-small = ocrkit.models.backbones.mobilenetv3:mobilenetv3_small",
            "mobilenetv3-large = ocrkit.models.backbones.mobilenetv3:mobilenetv3_large",
        ],
        "ocrkit.necks": [
            "cap = ocrkit.models.necks.cap:cap",
            "bilstm = ocrkit.models.necks.sequence:bilstm",
            "multirow-stretch = ocrkit.models.necks.multirow:multirow_stretch",
            "row-attention = ocrkit.models.necks.multirow:row_attention",
            "tokens = ocrkit.models.necks.tokens:tokens",
        ],
        "ocrkit.heads": ["ctc = ocrkit.models.heads.ctc:ctc",
                         "lightformer = ocrkit.models.heads.lightformer:lightformer"],
        "ocrkit.classifiers": ["linear = ocrkit.models.classifiers.linear:linear",
                               "multihot = ocrkit.models.classifiers.multihot:multihot"],
    },
)
