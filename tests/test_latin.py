"""English text (english.py, english_signs.py) and Latin fonts (latin_fonts.py)."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from data_tools.synth.english import frequency_list
from data_tools.synth.fonts import FontSpec
from data_tools.synth.latin import (
    ACCENTED,
    EN_CHARSET,
    SCENE_MIX,
    EnglishText,
    LatinFont,
    choose_font,
    font_style,
    latin_fonts,
)
from ocrkit.errors import UsageError

N = 2000


@pytest.fixture(scope="module")
def text() -> EnglishText:
    return EnglishText.load()


@pytest.fixture(scope="module")
def drawn(text) -> list[tuple[str, str]]:
    rng = random.Random(2024)
    return [text.sample_kind(rng) for _ in range(N)]


def test_en_charset_is_ascii_plus_german_french_and_currency():
    assert len(EN_CHARSET) == len(set(EN_CHARSET))
    assert set(map(chr, range(0x20, 0x7F))) <= set(EN_CHARSET)
    assert set("äöüÄÖÜßéèêëàâçîïôûùÿœæÉÈÊËÀÂÇÎÏÔÛÙŸŒÆ£€") <= set(EN_CHARSET)
    assert len(EN_CHARSET) == 95 + 2 + 7 + 30


def test_sample_is_deterministic_for_a_seed(text):
    first = [text.sample(random.Random(5)) for _ in range(3)]
    assert len(set(first)) == 1
    def stream(gen: EnglishText, seed: int) -> list[str]:
        rng = random.Random(seed)
        return [gen.sample(rng) for _ in range(300)]

    a, b, c = stream(text, 11), stream(text, 11), stream(text, 12)
    assert a == b and a != c
    assert stream(EnglishText.load(), 11) == a   # a second load gives the same stream


@pytest.mark.parametrize("max_chars", [6, 24])
def test_labels_use_the_charset_and_fit_max_chars(max_chars):
    gen = EnglishText.load(max_chars=max_chars)
    rng = random.Random(max_chars)
    allowed = set(EN_CHARSET)
    for _ in range(N):
        label = gen.sample(rng)
        assert 0 < len(label) <= max_chars, label
        assert set(label) <= allowed, label
        assert label == " ".join(label.split()), repr(label)


def test_kinds_come_at_their_configured_shares(drawn):
    counts = Counter(kind for kind, _ in drawn)
    total = sum(SCENE_MIX.values())
    for kind, share in SCENE_MIX.items():
        assert abs(counts[kind] / N - share / total) < 0.035, (kind, counts[kind])


def test_a_custom_mix_draws_only_its_kinds():
    gen = EnglishText.load(mix={"number": 1.0, "abbrev": 0.0})
    rng = random.Random(0)
    kinds = {gen.sample_kind(rng)[0] for _ in range(300)}
    assert kinds == {"number"}


def test_every_category_appears(drawn):
    labels = [label for _, label in drawn]

    def share(pattern: str, among=labels) -> float:
        return sum(bool(re.search(pattern, s)) for s in among) / len(among)

    assert share(r"^[A-Z][a-z]{2,}$") > 0.05                      # Capitalised
    assert share(r"^[A-Z]{3,}$") > 0.03                           # ALL CAPS
    assert share(r"^[a-z]{3,}$") > 0.15                           # lower case
    assert share(r"\d") > 0.12                                    # digits
    assert share(r"[$£€]\d|\d ?€|\d+p$") > 0.02                   # prices with a currency
    assert share(r"\d%") > 0.005                                  # percent
    assert share(r"\d:\d\d|24/7") > 0.005                         # times
    assert share(r"[!?,;:()\"]") > 0.05                           # punctuation
    assert share(r"^[A-Za-z]+'[a-zA-Z]+$") > 0.005                # don't, I'M
    assert share("[" + "".join(sorted(ACCENTED)) + "]") > 0.04    # accented letters
    names = [s for kind, s in drawn if kind in ("person", "place")]
    assert share(r"^[A-Z][a-z]+ [A-Z][a-z]+", names) > 0.10       # "New York", "Ann Smith"
    assert share(r"^[A-Z][a-z]+-[A-Z][a-z]+", names) > 0.02       # "Jean-Luc", "Baden-Baden"
    people = [s for kind, s in drawn if kind == "person"]
    assert share(r"^[A-Z][a-z]+-[A-Z][a-z]+$", people) > 0.02     # "Jean-Luc", "Smith-Jones"
    assert share(r"^[A-Z][a-z]+ [A-Z][a-z]+$", people) > 0.08     # "Ann Smith"
    abbrevs = [s for kind, s in drawn if kind == "abbrev"]
    assert share(r"^([A-Z]\.){2,}$", abbrevs) > 0.05              # U.S.A.


def test_word_case_follows_its_shares():
    gen = EnglishText.load(mix={"word": 1.0}, punct_rate=0.0, hyphen_rate=0.0,
                           word_case={"lower": 0.5, "title": 0.3, "upper": 0.2})
    rng = random.Random(3)
    words = [gen.sample(rng) for _ in range(N)]
    longer = [w for w in words if sum(c.isalpha() for c in w) >= 2]
    upper = sum(w == w.upper() for w in longer) / len(longer)
    title = sum(w[0].isupper() and w[1:] == w[1:].lower() for w in longer) / len(longer)
    assert abs(upper - 0.2) < 0.035 and abs(title - 0.3) < 0.04


def test_uniform_sampling_reaches_rare_words_frequency_sampling_does_not():
    common = {w for w, _ in sorted(frequency_list("en"), key=lambda wc: -wc[1])[:5000]}

    def words(uniform_share: float) -> list[str]:
        gen = EnglishText.load(mix={"word": 1.0}, uniform_share=uniform_share, punct_rate=0.0,
                               hyphen_rate=0.0, word_case={"lower": 1.0})
        rng = random.Random(9)
        return [gen.sample(rng) for _ in range(1000)]

    freq, uniform = words(0.0), words(1.0)
    rare_freq = sum(w not in common for w in freq) / len(freq)
    rare_uniform = sum(w not in common for w in uniform) / len(uniform)
    assert rare_uniform > 0.8 and rare_freq < 0.2, (rare_uniform, rare_freq)
    assert len(set(uniform)) > 950 and len(set(freq)) < 700


def test_foreign_words_carry_accents_by_default():
    gen = EnglishText.load(mix={"foreign": 1.0}, punct_rate=0.0)
    rng = random.Random(4)
    labels = [gen.sample(rng) for _ in range(500)]
    with_accent = sum(bool(ACCENTED.intersection(s)) for s in labels) / len(labels)
    assert with_accent > 0.65
    assert {"ä", "ö", "ü", "ß", "é", "è", "à", "ç"} <= set("".join(labels).lower())


def test_bad_kinds_and_lengths_are_usage_errors(text):
    with pytest.raises(UsageError, match="unknown kind"):
        EnglishText.load(mix={"words": 1.0})
    with pytest.raises(UsageError, match="unknown kind"):
        text.sample_kind(random.Random(0), "emoji")
    with pytest.raises(UsageError, match="max_chars"):
        EnglishText.load(max_chars=2)


# -- fonts ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pip_fonts() -> dict[str, list[LatinFont]]:
    fonts = {role: latin_fonts(role, system=False) for role in ("print", "handwriting")}
    if len({f.family for f in fonts["print"]}) < 10:
        pytest.fail("Latin fonts missing: install the extras with pip install '.[fonts,test]'")
    return fonts


def test_pip_fonts_give_many_designs_per_role(pip_fonts):
    hand = pip_fonts["handwriting"]
    printed = pip_fonts["print"]
    assert len({f.family for f in hand if f.style_class == "handwriting"}) >= 5
    assert len({f.family for f in printed}) >= 10
    classes = {f.style_class for f in printed}
    assert {"serif", "sans", "display", "condensed", "mono", "script"} <= classes
    assert any(f.bold for f in printed) and any(f.weight >= 900 for f in printed)
    assert all(f.source == "pip" and f.licence in ("OFL-1.1", "Apache-2.0")
               for f in printed + hand)


def _ink(font, ch: str) -> tuple:
    mask = font.getmask(ch, mode="L")
    return mask.getbbox(), mask.size, bytes(mask)


def test_missing_sets_match_what_each_face_draws(pip_fonts):
    """Checked independently of GlyphChecker: against the .notdef glyph of a
    private-use code point (U+E000), at another size."""
    faces = {(f.path, f.axes): f for fs in pip_fonts.values() for f in fs}.values()
    chars = EN_CHARSET.replace(" ", "")
    for face in faces:
        font = face.load(24)
        notdef = _ink(font, "\ue000")
        drawn = {ch for ch in chars if (r := _ink(font, ch))[0] is not None and r != notdef}
        assert face.missing == frozenset(chars) - drawn, face.name
    orbitron = [f for f in pip_fonts["print"] if f.family == "Orbitron"]
    assert orbitron and all("^" in f.missing for f in orbitron)


def test_variable_fonts_are_instanced_at_their_weight(pip_fonts):
    faces = {f.name: f for f in pip_fonts["print"]}
    regular, bold = faces["Montserrat Regular"], faces["Montserrat Bold"]
    assert regular.path == bold.path   # one variable file, two instances

    def ink(face: LatinFont) -> int:
        mask = face.load(40).getmask("Hamburg", mode="L")
        return sum(bytes(mask))

    assert ink(bold) > 1.3 * ink(regular)
    # Montserrat's default instance is Thin: Regular must be heavier than the raw file.
    raw = FontSpec(regular.path).load(40).getmask("Hamburg", mode="L")
    assert ink(regular) > 1.5 * sum(bytes(raw))


def test_caps_only_faces_are_flagged_and_refuse_lowercase(pip_fonts):
    faces = {f.family: f for f in pip_fonts["print"]}
    assert faces["Bebas Neue"].caps_only and faces["Bungee"].caps_only
    assert not faces["Roboto"].caps_only and not faces["Lobster"].caps_only
    assert faces["Bebas Neue"].draws("OPEN 24/7") and not faces["Bebas Neue"].draws("Open")
    assert not faces["Bebas Neue"].draws("STRAßE")   # ß is lowercase: it would draw "SS"


def test_choose_font_returns_a_face_that_draws_the_label(pip_fonts):
    fonts = pip_fonts["print"]
    rng = random.Random(1)
    for label in ("Hello", "x^2", "CAFÉ", "Straße"):
        for _ in range(20):
            face = choose_font(fonts, rng, label)
            assert face is not None and face.draws(label)
            assert "^" not in label or face.family != "Orbitron"
    assert choose_font(fonts, rng, "中文") is None  # not asked about: not drawn
    # Families, not faces, are drawn uniformly: Roboto's five faces do not make it
    # five times as frequent as Anton's one.
    families = Counter(choose_font(fonts, rng, "Hello").family for _ in range(3000))
    assert len(families) == len({f.family for f in fonts if f.draws("Hello")})
    assert max(families.values()) < 2.2 * min(families.values())


def test_font_style_describes_pip_faces_and_guesses_others(pip_fonts):
    face = next(f for f in pip_fonts["print"] if f.name == "Roboto Mono Bold")
    style = font_style(face)
    assert style["family"] == "Roboto Mono" and style["class"] == "mono" and style["bold"]
    guessed = font_style(FontSpec("/x/Foo-CondensedBoldItalic.ttf", 0, "Foo Condensed Bold Italic"))
    assert guessed["class"] == "condensed" and guessed["bold"] and guessed["italic"]
    assert font_style(FontSpec("/x/a.ttf", 0, "Bar Serif"))["class"] == "serif"
    assert font_style(FontSpec("/x/a.ttf", 0, "Bar Sans"))["class"] == "sans"
    assert font_style(FontSpec("/x/a.ttf", 0, "Bar Sans Mono Book"))["class"] == "mono"
    assert font_style(FontSpec("/x/a.ttf", 0, "Bar Script Bold"))["class"] == "handwriting"


def test_unknown_role_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown font role"):
        latin_fonts("scene")
