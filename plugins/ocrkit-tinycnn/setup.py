"""ocrkit-tinycnn: an example ocrkit plugin adding the `tiny-cnn` backbone."""

from setuptools import setup

setup(
    name="ocrkit-tinycnn",
    version="0.1.0",
    description="Example ocrkit plugin: a tiny depthwise-separable CNN backbone.",
    packages=["ocrkit_tinycnn"],
    python_requires=">=3.10",
    install_requires=["torch"],
    entry_points={"ocrkit.backbones": ["tiny-cnn = ocrkit_tinycnn:tiny_cnn"]},
)
