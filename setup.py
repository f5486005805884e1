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
        # English text for `--lang en` (data_tools/synth/english.py). pyspellchecker
        # (MIT, 7 MB, no dependencies, maintained) ships word-frequency lists for
        # English (160k words), German and French built from subtitle counts and
        # filtered against spelling dictionaries, so uniformly drawn rare words are
        # real words; wordfreq was the alternative: 57 MB plus five dependencies,
        # frozen since 2023, and its rare tail is mostly typos and fragments.
        # <1: ocrkit reads `SpellChecker(...).word_frequency.dictionary`, an attribute a
        # major version may rename.
        "pyspellchecker>=0.8,<1",
        # Faker (MIT, ~25 MB, no dependencies on Linux, very actively maintained):
        # people's first and last names with US census/SSA frequencies, British,
        # German and French names, countries, US states, UK counties, German/Austrian/
        # Swiss towns, French departments; read as tables, never as a generator.
        "faker>=30",
    ],
    extras_require={
        # Three Chinese font designs as pip packages (no apt): Noto Sans CJK (OFL),
        # WenQuanYi Micro Hei (Apache-2.0), Noto Serif SC (a Song design, OFL).
        # Pinned: these are repackagings by third parties, checked file by file.
        #
        # Latin fonts for `--lang en` (data_tools/synth/latin_fonts.py): Google Fonts
        # families repackaged unmodified by fontpkg (one small wheel each, ~25 MB in
        # all), pinned like the CJK ones. All SIL OFL-1.1 except Permanent Marker,
        # Roboto Slab, Satisfy and Yellowtail (Apache-2.0). Handwriting and script:
        # Caveat, Kalam, Indie Flower, Shadows Into Light, Zeyada, Delius, Permanent
        # Marker, Dancing Script, Pacifico, Satisfy, Yellowtail, Great Vibes.
        "fonts": ["noto-cjk-sans-otc==0.0.1", "paperang-p2-fonts-cjk==0.1.0",
                  "pylopdf-fonts-zh-cn==0.1.1",
                  # handwriting / script
                  "fontpkg-caveat==2.0", "fontpkg-kalam==2.1", "fontpkg-indie-flower==2.0",
                  "fontpkg-shadows-into-light==1.0", "fontpkg-zeyada==1.2",
                  "fontpkg-delius==1.1", "fontpkg-permanent-marker==1.1",
                  "fontpkg-dancing-script==2.1", "fontpkg-pacifico==3.1",
                  "fontpkg-satisfy==1.1", "fontpkg-yellowtail==1.2",
                  "fontpkg-great-vibes==1.103",
                  # sans
                  "fontpkg-roboto==3.15", "fontpkg-open-sans==3.3",
                  "fontpkg-source-sans-3==3.52", "fontpkg-ibm-plex-sans==3.201",
                  "fontpkg-montserrat==9.0", "fontpkg-arimo==1.341",
                  # condensed
                  "fontpkg-roboto-condensed==3.8", "fontpkg-oswald==4.103",
                  "fontpkg-barlow-condensed==1.408", "fontpkg-fjalla-one==1.2",
                  "fontpkg-pt-sans-narrow==2.3", "fontpkg-yanone-kaffeesatz==2.3",
                  "fontpkg-teko==2.0",
                  # serif and slab
                  "fontpkg-libre-baskerville==2.5", "fontpkg-eb-garamond==1.3",
                  "fontpkg-pt-serif==1.0", "fontpkg-bitter==3.21", "fontpkg-roboto-slab==2.2",
                  "fontpkg-playfair-display==1.203",
                  # display, bold and black
                  "fontpkg-anton==2.116", "fontpkg-archivo-black==1.6",
                  "fontpkg-alfa-slab-one==2.0", "fontpkg-abril-fatface==1.1",
                  "fontpkg-titan-one==1.1", "fontpkg-black-ops-one==1.4",
                  "fontpkg-bebas-neue==2.0", "fontpkg-bungee==2.0", "fontpkg-lobster==2.100",
                  "fontpkg-righteous==1.0", "fontpkg-comfortaa==3.105", "fontpkg-fredoka==2.1",
                  "fontpkg-press-start-2p==3.0", "fontpkg-orbitron==2.1",
                  # monospace
                  "fontpkg-roboto-mono==3.1", "fontpkg-ibm-plex-mono==2.3",
                  "fontpkg-source-code-pro==1.26", "fontpkg-space-mono==1.3"],
        # ONNX export (`ocrkit export`) and its --verify against onnxruntime.
        "export": ["onnx>=1.15", "onnxruntime>=1.17"],
        # rapidocr-onnxruntime: the export profile is checked against RapidOCR itself
        # (pinned: the test drives its TextRecognizer class directly).
        # pytest-xdist: one test process per core (`-n auto`), the suite in about 3.5 minutes
        # on 2 cores instead of 6 (tests run one torch thread each and use free ports).
        "test": ["pytest>=7", "pytest-xdist>=3", "onnx>=1.15", "onnxruntime>=1.17",
                 "rapidocr-onnxruntime==1.4.4"],
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
                         "lightformer = ocrkit.models.heads.lightformer:lightformer",
                         "attention = ocrkit.models.heads.attention:attention"],
        "ocrkit.classifiers": ["linear = ocrkit.models.classifiers.linear:linear",
                               "multihot = ocrkit.models.classifiers.multihot:multihot"],
    },
)
