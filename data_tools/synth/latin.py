"""Latin-script text and fonts for ``--lang en``, in one import.

The text lives in english.py (words, names, places; number formats in
english_signs.py), the fonts in latin_fonts.py; this module gathers their
public names so renderers need one import::

    from data_tools.synth.latin import EN_CHARSET, EnglishText, latin_fonts, font_style
"""

from data_tools.synth.english import (
    ACCENTED,
    EN_CHARSET,
    HANDWRITING_MIX,
    NAME_CASE,
    SCENE_MIX,
    WORD_CASE,
    EnglishText,
)
from data_tools.synth.latin_fonts import (
    LATIN_FONT_PACKAGES,
    ROLES,
    STYLE_CLASSES,
    LatinFont,
    caps_only,
    choose_font,
    font_style,
    latin_fonts,
)

__all__ = [
    "ACCENTED",
    "EN_CHARSET",
    "HANDWRITING_MIX",
    "LATIN_FONT_PACKAGES",
    "NAME_CASE",
    "ROLES",
    "SCENE_MIX",
    "STYLE_CLASSES",
    "WORD_CASE",
    "EnglishText",
    "LatinFont",
    "caps_only",
    "choose_font",
    "font_style",
    "latin_fonts",
]
