"""English text for ``--lang en``: words, names, places and what signs carry.

Nothing is downloaded; every source installs with ocrkit:

* **Words**: pyspellchecker's word-frequency lists (English, 160k words; German
  and French for the accented letters). They were counted on film subtitles
  and filtered against spelling dictionaries, so a word drawn *uniformly* from
  the list is a real word however rare ("zymurgy"), and a word drawn *by
  frequency* follows everyday use ("you", "the", "don't"). A recognizer needs
  both: frequent words are what it meets, rare words keep it from learning a
  language model instead of reading the letters (MJSynth draws its 90k-word
  lexicon uniformly for that reason).
* **People**: Faker's name tables, first names and surnames of the US (with
  census/SSA frequencies), Britain, Ireland, Germany, Austria, France, Italy,
  Spain and the Netherlands. Faker is read as data, never run as a generator,
  so ``sample`` is deterministic for a given ``random.Random``.
* **Places**: Faker's countries, US states, UK and Irish counties, German,
  Austrian and Swiss towns and French départements and regions, plus
  ``PLACES`` below: real towns and landmarks of the English-speaking world
  (Faker makes up its US and UK town names), chosen for the forms that break
  naive tokenisers: several words, hyphens, apostrophes, "St".
* **What signs carry**: prices, times, dates, phone numbers, codes, percent,
  ordinals and units, abbreviations and initialisms, made by small generators.

Each label is one *kind*, drawn with the shares of ``SCENE_MIX`` (the default)
or any mix given to ``EnglishText.load``; ``HANDWRITING_MIX`` leans towards the
names and places that handwritten forms carry. Words then get a case (lower,
Capitalised or ALL CAPS, shares in ``WORD_CASE``), and sometimes punctuation
attached (``"Hello!"``, ``"(open)"``) or a hyphenated partner (``"e-mail"``).
Labels use only ``EN_CHARSET`` and are at most ``max_chars`` long: anything a
table holds outside them is dropped when the tables are loaded.
"""

from __future__ import annotations

import bisect
import functools
import importlib
import itertools
import random
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ocrkit.errors import UsageError

# Printable ASCII (space included), the pound and euro signs that prices carry,
# and the accented letters of German and French with their capitals.
_GERMAN = "äöüÄÖÜß"
_FRENCH = "éèêëàâçîïôûùÿœæÉÈÊËÀÂÇÎÏÔÛÙŸŒÆ"
EN_CHARSET: str = "".join(chr(c) for c in range(0x20, 0x7F)) + "£€" + _GERMAN + _FRENCH
_EN_SET = frozenset(EN_CHARSET)
ACCENTED = frozenset(_GERMAN + _FRENCH)

# Shares of each kind of label (normalised, so only ratios matter).
SCENE_MIX: dict[str, float] = {
    "word": 0.40,      # one English word, by frequency or uniformly (``uniform_share``)
    "phrase": 0.06,    # two or three English words with spaces ("no parking")
    "foreign": 0.06,   # a German or French word, mostly with accents
    "person": 0.10,    # first names, surnames, full names, initials, titles
    "place": 0.12,     # towns, countries, states, counties, landmarks
    "street": 0.04,    # "Baker St.", "221B Baker Street", "Hauptstraße 5"
    "number": 0.17,    # prices, times, dates, phones, codes, percent, units
    "abbrev": 0.05,    # "U.S.A.", "Ltd.", "ATM", "e.g."
}
HANDWRITING_MIX: dict[str, float] = {
    "word": 0.30, "phrase": 0.05, "foreign": 0.05, "person": 0.22, "place": 0.22,
    "street": 0.07, "number": 0.07, "abbrev": 0.02,
}
# Case of words, phrases and foreign words.
WORD_CASE: dict[str, float] = {"lower": 0.55, "title": 0.25, "upper": 0.20}
# Case of names, places and streets (they come Capitalised).
NAME_CASE: dict[str, float] = {"as_is": 0.80, "upper": 0.15, "lower": 0.05}
# Punctuation attached to a word or phrase when it gets some (``punct_rate``).
PUNCTUATION: dict[str, float] = {
    "{}!": 0.22, "{}.": 0.18, "{},": 0.14, "{}?": 0.08, "{}:": 0.08, "{};": 0.02,
    "{}...": 0.03, "({})": 0.08, '"{}"': 0.06, "'{}'": 0.02, "*{}": 0.02,
    "-{}-": 0.01, "{}/": 0.01, "#{}": 0.01,
}
# Word prefixes that make hyphenated words, besides joining two list words.
_HYPHEN_PREFIXES = ("e", "x", "t", "re", "non", "self", "anti", "pre", "co", "ex", "post",
                    "semi", "multi", "over", "well", "all", "half", "mid")

# Real places of the English-speaking world and a few beyond, written for this
# module (Faker invents its US and UK town names). Many have several words,
# hyphens, apostrophes or "St", as real addresses and signs do.
PLACES = """
London|Manchester|Birmingham|Liverpool|Leeds|Sheffield|Bristol|Newcastle|Nottingham|Leicester
Coventry|Bradford|Southampton|Portsmouth|Brighton|Plymouth|Reading|Oxford|Cambridge|York|Bath
Exeter|Norwich|Canterbury|Chester|Durham|Lincoln|Carlisle|Ipswich|Swindon|Luton|Watford|Slough
Stratford-upon-Avon|Newcastle upon Tyne|Kingston upon Hull|Milton Keynes|Southend-on-Sea
Henley-on-Thames|Weston-super-Mare|Ashby-de-la-Zouch|Berwick-upon-Tweed|Clacton-on-Sea
Bury St Edmunds|St Albans|St Andrews|St Ives|King's Lynn|Bishop's Stortford|Bognor Regis
Royal Tunbridge Wells|Market Harborough|Hemel Hempstead|Welwyn Garden City|Stoke-on-Trent
Burton upon Trent|Newport Pagnell|Westward Ho!|Great Yarmouth|Lytham St Annes|High Wycombe
Edinburgh|Glasgow|Aberdeen|Dundee|Inverness|Stirling|Perth|Fort William|Kirkcaldy|Paisley
Cardiff|Swansea|Newport|Aberystwyth|Wrexham|Llandudno|Bangor|Belfast|Derry|Londonderry
Dublin|Cork|Galway|Limerick|Kilkenny|Waterford|Sligo|Killarney|Drogheda|Dundalk|Athlone
New York|Los Angeles|Chicago|Houston|Phoenix|Philadelphia|San Antonio|San Diego|Dallas
San Jose|Austin|Jacksonville|Fort Worth|Columbus|Charlotte|San Francisco|Indianapolis
Seattle|Denver|Washington|Boston|El Paso|Nashville|Detroit|Oklahoma City|Portland
Las Vegas|Memphis|Louisville|Baltimore|Milwaukee|Albuquerque|Tucson|Fresno|Sacramento
Kansas City|Mesa|Atlanta|Omaha|Colorado Springs|Raleigh|Long Beach|Virginia Beach|Miami
Oakland|Minneapolis|Tulsa|Tampa|New Orleans|Wichita|Cleveland|Bakersfield|Honolulu
St. Louis|St. Paul|St. Petersburg|Salt Lake City|Baton Rouge|Des Moines|Santa Fe|Santa Monica
Winston-Salem|Wilkes-Barre|Coeur d'Alene|Martha's Vineyard|Ann Arbor|Palo Alto|Beverly Hills
Key West|Niagara Falls|Sioux Falls|Little Rock|Grand Rapids|Green Bay|Cedar Rapids|Boise
Jersey City|Newark|Buffalo|Rochester|Syracuse|Albany|Hartford|Providence|Burlington
Anchorage|Juneau|Fairbanks|Cheyenne|Billings|Bismarck|Fargo|Spokane|Tacoma|Eugene|Reno
Pittsburgh|Cincinnati|Toledo|Akron|Dayton|Lexington|Knoxville|Chattanooga|Birmingham
Savannah|Charleston|Myrtle Beach|Chapel Hill|Fort Lauderdale|West Palm Beach|Palm Springs
Toronto|Montréal|Vancouver|Calgary|Edmonton|Ottawa|Winnipeg|Québec City|Hamilton|Halifax
Victoria|Saskatoon|Regina|St. John's|Thunder Bay|Niagara-on-the-Lake|Trois-Rivières|Moncton
Sydney|Melbourne|Brisbane|Perth|Adelaide|Hobart|Darwin|Canberra|Alice Springs|Gold Coast
Wagga Wagga|Geelong|Townsville|Cairns|Ballarat|Bendigo|Launceston|Port Macquarie|Broome
Auckland|Wellington|Christchurch|Dunedin|Queenstown|Palmerston North|Napier|Hamilton|Nelson
Paris|Berlin|Rome|Madrid|Vienna|Prague|Amsterdam|Brussels|Zurich|Geneva|Munich|Cologne
Frankfurt am Main|Düsseldorf|Köln|München|Nürnberg|Würzburg|Lübeck|Göttingen|Tübingen
Baden-Baden|Garmisch-Partenkirchen|Castrop-Rauxel|Freiburg im Breisgau|Bad Homburg
Saint-Étienne|Aix-en-Provence|Boulogne-sur-Mer|Clermont-Ferrand|Châlons-en-Champagne
Besançon|Orléans|Nîmes|Angoulême|Saint-Malo|Le Havre|La Rochelle|Montpellier|Valence
Copenhagen|Stockholm|Oslo|Helsinki|Lisbon|Porto|Barcelona|Seville|Milan|Venice|Florence
Naples|Athens|Warsaw|Budapest|Bucharest|Istanbul|Dubrovnik|Salzburg|Innsbruck|Luxembourg
Tokyo|Hong Kong|Singapore|Kuala Lumpur|Bangkok|Seoul|Shanghai|Beijing|Mumbai|New Delhi
Ho Chi Minh City|Abu Dhabi|Dubai|Tel Aviv|Cairo|Cape Town|Johannesburg|Nairobi|Lagos
Addis Ababa|Dar es Salaam|Rio de Janeiro|Buenos Aires|Mexico City|Port-au-Prince|Lima
Hyde Park|Times Square|Piccadilly Circus|Central Park|Golden Gate|Grand Central|Union Station
Heathrow|Gatwick|King's Cross|Waterloo|Notre-Dame|Champs-Élysées|Mont-Saint-Michel
Covent Garden|Notting Hill|Soho|Brooklyn|Manhattan|Queens|the Bronx|Staten Island|Harlem
Wall Street|Broadway|Hollywood|Silicon Valley|Cape Cod|Long Island|Lake Tahoe|Yosemite
Lake District|Isle of Wight|Isle of Man|Land's End|John o' Groats|Loch Ness|Snowdonia
"""

# Street names that are not surnames, and street types with their abbreviations.
_STREET_NAMES = (
    "High", "Main", "Church", "Station", "Park", "Mill", "Queen", "King", "Victoria", "Market",
    "Bridge", "Oak", "Elm", "Maple", "Cedar", "Pine", "Chestnut", "Walnut", "Willow", "Spring",
    "Lake", "River", "Hill", "Green", "Castle", "Abbey", "Chapel", "School", "Water", "North",
    "South", "East", "West", "New", "Broad", "London", "York", "Washington", "Lincoln",
    "Jefferson", "Madison", "Franklin", "Sunset", "Ocean", "Forest", "Meadow", "Orchard",
)
_STREET_TYPES = (
    ("Street", "St.", "St"), ("Road", "Rd", "Rd."), ("Avenue", "Ave", "Ave."), ("Lane", "Ln"),
    ("Drive", "Dr.", "Dr"), ("Boulevard", "Blvd", "Blvd."), ("Place", "Pl."), ("Court", "Ct"),
    ("Square", "Sq."), ("Close",), ("Way",), ("Crescent", "Cres."), ("Terrace", "Terr."),
    ("Row",), ("Gardens", "Gdns"), ("Parkway", "Pkwy"), ("Grove",), ("Walk",), ("Hill",),
)
_GERMAN_STREETS = ("Goethe", "Schiller", "Bahnhof", "Haupt", "Kirch", "Schul", "Garten", "Berg",
                   "Linden", "Mozart", "Friedrich", "Königs", "Markt", "Mühlen", "Rosen", "Wald")
_FRENCH_STREETS = ("Rue de la Paix", "Rue du Moulin", "Rue de l'Église", "Avenue Foch",
                   "Place de la Gare", "Boulevard Saint-Michel", "Rue Victor Hugo", "Quai d'Orsay",
                   "Rue des Écoles", "Avenue Jean Jaurès", "Place du Marché", "Rue Pasteur",
                   "Allée des Tilleuls", "Chemin des Vignes", "Rue de Rivoli", "Cours Mirabeau")

# Abbreviations and initialisms as shops, offices and roads write them.
ABBREVIATIONS = (
    "U.S.A.", "U.S.", "U.K.", "E.U.", "N.Y.", "D.C.", "L.A.", "Ltd.", "Ltd", "Inc.", "Co.",
    "Corp.", "Dept.", "Dr.", "Mr.", "Mrs.", "Ms.", "Mr", "Mrs", "St.", "Ave.", "Rd.", "No.",
    "Tel.", "Fax", "Est.", "approx.", "e.g.", "i.e.", "etc.", "a.m.", "p.m.", "vs.", "P.S.",
    "R.S.V.P.", "Jr.", "Sr.", "Mon.", "Tue.", "Wed.", "Thu.", "Fri.", "Sat.", "Sun.", "Jan.",
    "Feb.", "Aug.", "Sept.", "Oct.", "Nov.", "Dec.", "ATM", "FAQ", "DIY", "WC", "VAT", "BBQ",
    "USB", "WiFi", "Wi-Fi", "OK", "TV", "PhD", "NYC", "B&B", "A&E", "AT&T", "M&S", "H&M",
    "Q&A", "R&D", "P&O", "24h", "SOS", "ASAP", "ID", "PIN", "GPS", "HQ", "NHS", "BBC", "CNN",
    "FBI", "UN", "UNESCO", "NASA", "PTO", "c/o", "w/", "a/c", "N/A", "Nr.", "Str.", "z.B.",
    "GmbH", "AG", "S.A.", "S.A.R.L.", "Cie", "Mme", "Mlle", "M.", "av.", "bd", "TTC", "HT",
)
_HYPHENATED = (
    "e-mail", "check-in", "check-out", "drive-thru", "take-away", "walk-in", "self-service",
    "T-shirt", "co-op", "non-stop", "24-hour", "well-known", "up-to-date", "one-way",
    "in-store", "pick-up", "drop-off", "car-park", "x-ray", "on-line", "long-term", "part-time",
    "full-time", "re-open", "mother-in-law", "do-it-yourself", "ready-made", "hand-made",
)


@dataclass(frozen=True)
class Pool:
    """Strings drawn uniformly, or by weight when ``cum`` (cumulative weights) is set."""

    items: tuple[str, ...]
    cum: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not self.items:
            raise UsageError("an English text table is empty after filtering to EN_CHARSET")

    @classmethod
    def weighted(cls, pairs: Sequence[tuple[str, float]]) -> Pool:
        return cls(tuple(p[0] for p in pairs), tuple(itertools.accumulate(p[1] for p in pairs)))

    def draw(self, rng: random.Random) -> str:
        if self.cum is None:
            return self.items[rng.randrange(len(self.items))]
        i = bisect.bisect_right(self.cum, rng.random() * self.cum[-1])
        return self.items[min(i, len(self.items) - 1)]

    def __len__(self) -> int:
        return len(self.items)


def _choose(rng: random.Random, shares: Mapping[str, float]) -> str:
    """A key of ``shares`` drawn with its share (insertion order fixes the result)."""
    x = rng.random() * sum(shares.values())
    for key, share in shares.items():
        x -= share
        if x < 0:
            return key
    return next(reversed(list(shares)))


def _fits(text: str, max_chars: int) -> bool:
    return 0 < len(text) <= max_chars and _EN_SET.issuperset(text)


@functools.lru_cache(maxsize=4)
def frequency_list(lang: str) -> tuple[tuple[str, int], ...]:
    """pyspellchecker's (word, count) list for ``lang``, in the file's order (fixed
    for a given package version, which is all determinism needs)."""
    try:
        from spellchecker import SpellChecker
    except ImportError:
        raise UsageError("--lang en needs the 'pyspellchecker' package: pip install pyspellchecker"
                         ) from None
    counts = SpellChecker(language=lang, distance=1).word_frequency.dictionary
    return tuple(counts.items())


def _faker_table(kind: str, locale: str, attr: str) -> list[str]:
    """A table of Faker's ``providers.<kind>.<locale>`` as strings ([] if absent)."""
    try:
        provider = importlib.import_module(f"faker.providers.{kind}.{locale}").Provider
    except ImportError:
        return []
    table = getattr(provider, attr, ())
    return [row[-1] if isinstance(row, tuple) else row for row in table]


def _faker_weighted(kind: str, locale: str, attr: str) -> list[tuple[str, float]]:
    """Faker's table with its frequencies where it has them (US names), else equal."""
    try:
        provider = importlib.import_module(f"faker.providers.{kind}.{locale}").Provider
    except ImportError:
        return []
    table = getattr(provider, attr, ())
    if isinstance(table, Mapping):
        return [(str(k), float(v)) for k, v in table.items()]
    return [(str(name), 1.0) for name in table]


# Locales of people's names with their shares (Faker's locale codes).
NAME_LOCALES: dict[str, float] = {
    "en_US": 0.35, "en_GB": 0.15, "en_IE": 0.08, "de_DE": 0.10, "de_AT": 0.04, "fr_FR": 0.10,
    "it_IT": 0.06, "es_ES": 0.06, "nl_NL": 0.06,
}


def _names_pool(locale: str, attr: str, max_chars: int) -> Pool | None:
    pairs = _faker_weighted("person", locale, attr)
    kept: dict[str, float] = {}
    for name, weight in pairs:
        if _fits(name, max_chars):
            kept[name] = kept.get(name, 0.0) + weight
    if not kept:
        return None
    return Pool.weighted(sorted(kept.items()))


def _place_pools(max_chars: int) -> dict[str, Pool]:
    """Place tables by group, filtered to EN_CHARSET and ``max_chars``."""
    def keep(names):
        seen = dict.fromkeys(n.strip() for n in names if "(" not in n)
        return tuple(n for n in seen if _fits(n, max_chars))

    towns = keep(p for line in PLACES.split("\n") for p in line.split("|") if p)
    countries = keep(_faker_table("address", "en_US", "countries"))
    regions = keep(itertools.chain(
        _faker_table("address", "en_US", "states"), _faker_table("address", "en_GB", "counties"),
        _faker_table("address", "en_IE", "counties"), _faker_table("address", "en_CA", "provinces"),
        _faker_table("address", "en_AU", "states"), _faker_table("address", "fr_FR", "regions"),
        _faker_table("address", "fr_FR", "departments"), _faker_table("address", "de_DE", "states"),
    ))
    european = keep(itertools.chain(
        _faker_table("address", "de_DE", "cities"), _faker_table("address", "de_AT", "cities"),
        _faker_table("address", "de_CH", "cities"), _faker_table("address", "fr_FR", "countries"),
        _faker_table("address", "de_DE", "countries"),
    ))
    pools = {"town": towns, "country": countries, "region": regions, "european": european}
    return {k: Pool(v) for k, v in pools.items() if v}


@dataclass
class EnglishText:
    """Endless English labels for scene text and handwriting (see the module doc).

    Build with ``load``; ``sample(rng)`` draws one label. All randomness comes
    from the ``rng`` passed in, so a seeded ``random.Random`` gives the same
    labels in any process.
    """

    max_chars: int
    mix: dict[str, float]
    uniform_share: float
    word_case: dict[str, float]
    name_case: dict[str, float]
    punct_rate: float
    hyphen_rate: float
    accented_share: float
    words: Pool            # English words by frequency
    rare: Pool             # English words, uniform (no possessives, no one-letter words)
    foreign: Pool          # German and French words by frequency
    foreign_rare: Pool     # the same, uniform
    accented: Pool         # German and French words with an accented letter, uniform
    first: dict[str, Pool]
    last: dict[str, Pool]
    places: dict[str, Pool]
    _makers: dict[str, Callable[[random.Random], str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        unknown = set(self.mix) - set(SCENE_MIX)
        if unknown:
            raise UsageError(f"unknown kind(s) of English text {sorted(unknown)}; "
                             f"choose from {list(SCENE_MIX)}")
        if self.max_chars < 4:
            raise UsageError(f"max_chars must be at least 4 for English text, got {self.max_chars}")
        from data_tools.synth import english_signs as signs
        self._makers = {
            "word": self._word, "phrase": self._phrase, "foreign": self._foreign,
            "person": self._person, "place": self._place, "street": self._street,
            "number": signs.number, "abbrev": self._abbrev,
        }

    @classmethod
    def load(
        cls,
        *,
        max_chars: int = 24,
        mix: Mapping[str, float] | None = None,
        uniform_share: float = 0.5,
        word_case: Mapping[str, float] | None = None,
        name_case: Mapping[str, float] | None = None,
        punct_rate: float = 0.12,
        hyphen_rate: float = 0.03,
        accented_share: float = 0.7,
    ) -> EnglishText:
        """Read the word and name tables (cached per process) and set the shares.

        Args:
            max_chars: longest label, in characters.
            mix: share of each kind of label (keys of ``SCENE_MIX``; missing
                kinds get no share). Default ``SCENE_MIX``.
            uniform_share: share of words (English and foreign) drawn uniformly
                from the list rather than by frequency.
            word_case: shares of ``lower``, ``title``, ``upper`` for words.
            name_case: shares of ``as_is``, ``upper``, ``lower`` for names.
            punct_rate: probability that a word or phrase gets punctuation.
            hyphen_rate: probability that a word becomes a hyphenated compound.
            accented_share: share of foreign words drawn from those with an
                accented letter (ä ö ü ß é è à ç ...).
        """
        tables = _tables(max_chars)
        return cls(
            max_chars=max_chars, mix=dict(mix if mix is not None else SCENE_MIX),
            uniform_share=uniform_share, word_case=dict(word_case or WORD_CASE),
            name_case=dict(name_case or NAME_CASE), punct_rate=punct_rate,
            hyphen_rate=hyphen_rate, accented_share=accented_share, **tables,
        )

    # -- public ---------------------------------------------------------------
    def sample(self, rng: random.Random) -> str:
        """One label: a word, phrase, name, place, street, number or abbreviation."""
        return self.sample_kind(rng)[1]

    def sample_kind(self, rng: random.Random, kind: str | None = None) -> tuple[str, str]:
        """``(kind, label)``; ``kind`` forces one kind of ``SCENE_MIX``."""
        if kind is None:
            kind = _choose(rng, self.mix)
        elif kind not in self._makers:
            raise UsageError(f"unknown kind of English text {kind!r}; "
                             f"choose from {list(SCENE_MIX)}")
        for _ in range(20):
            text = self._makers[kind](rng)
            if _fits(text, self.max_chars) and text == " ".join(text.split()):
                return kind, text
        return kind, self.rare.draw(rng)  # always fits: the tables were filtered

    # -- kinds ----------------------------------------------------------------
    def _english(self, rng: random.Random) -> str:
        return (self.rare if rng.random() < self.uniform_share else self.words).draw(rng)

    def _word(self, rng: random.Random) -> str:
        if rng.random() < self.hyphen_rate:
            return self._decorate(rng, self._hyphenated(rng))
        return self._decorate(rng, self._english(rng))

    def _hyphenated(self, rng: random.Random) -> str:
        r = rng.random()
        if r < 0.3:
            return rng.choice(_HYPHENATED)
        if r < 0.6:
            return f"{rng.choice(_HYPHEN_PREFIXES)}-{self._english(rng)}"
        return f"{self.words.draw(rng)}-{self._english(rng)}"

    def _phrase(self, rng: random.Random) -> str:
        n = 2 if rng.random() < 0.7 else 3
        words = [self.words.draw(rng) if rng.random() < 0.7 else self._english(rng)
                 for _ in range(n)]
        return self._decorate(rng, " ".join(words))

    def _foreign(self, rng: random.Random) -> str:
        if rng.random() < self.accented_share:
            word = self.accented.draw(rng)
        else:
            word = (self.foreign_rare if rng.random() < self.uniform_share
                    else self.foreign).draw(rng)
        return self._decorate(rng, word)

    def _decorate(self, rng: random.Random, text: str) -> str:
        """Apply a case from ``word_case`` and maybe attached punctuation."""
        case = _choose(rng, self.word_case)
        if case == "upper":
            text = text.upper()
        elif case == "title":
            text = " ".join(w[:1].upper() + w[1:] for w in text.split(" "))
        if rng.random() < self.punct_rate:
            text = _choose(rng, PUNCTUATION).format(text)
        return text

    def _name_case(self, rng: random.Random, text: str) -> str:
        case = _choose(rng, self.name_case)
        return text.upper() if case == "upper" else text.lower() if case == "lower" else text

    def _person(self, rng: random.Random) -> str:
        locale = _choose(rng, {k: v for k, v in NAME_LOCALES.items() if k in self.first})
        first, last = self.first[locale], self.last[locale]
        form = rng.random()
        if form < 0.25:
            text = first.draw(rng)
        elif form < 0.50:
            text = last.draw(rng)
        elif form < 0.72:
            text = f"{first.draw(rng)} {last.draw(rng)}"
        elif form < 0.79:
            initials = "".join(f"{rng.choice(string.ascii_uppercase)}."
                               for _ in range(1 if rng.random() < 0.75 else 2))
            text = f"{initials} {last.draw(rng)}"
        elif form < 0.85:
            title = rng.choice(("Mr.", "Mrs.", "Ms.", "Dr.", "Mr", "Mrs", "Prof.", "Herr", "Frau",
                                "M.", "Mme", "Sir", "Miss"))
            text = f"{title} {last.draw(rng)}"
        elif form < 0.93:
            # Hyphenated first names (Jean-Luc, Anna-Lena) and double-barrelled surnames.
            pool = first if rng.random() < 0.5 else last
            text = f"{pool.draw(rng)}-{pool.draw(rng)}"
        else:
            text = f"{last.draw(rng)}, {first.draw(rng)}"
        return self._name_case(rng, text)

    def _place(self, rng: random.Random) -> str:
        group = _choose(rng, {"town": 0.50, "country": 0.15, "region": 0.15, "european": 0.20})
        pool = self.places.get(group) or self.places["town"]
        text = pool.draw(rng)
        if group == "town" and rng.random() < 0.06:
            text = f"{text}, {rng.choice(('NY', 'CA', 'TX', 'UK', 'USA', 'England', 'Ireland'))}"
        return self._name_case(rng, text)

    def _street(self, rng: random.Random) -> str:
        r = rng.random()
        if r < 0.12:
            text = f"{rng.choice(_GERMAN_STREETS)}{rng.choice(('straße', 'str.', 'weg', 'platz'))}"
        elif r < 0.22:
            text = rng.choice(_FRENCH_STREETS)
        else:
            last = self.last.get("en_US") or next(iter(self.last.values()))
            name = rng.choice(_STREET_NAMES) if rng.random() < 0.5 else last.draw(rng)
            if rng.random() < 0.08:
                n = rng.randrange(1, 120)
                name = f"{n}{_ordinal_suffix(n)}"
            text = f"{name} {rng.choice(rng.choice(_STREET_TYPES))}"
        if rng.random() < 0.35:
            number = str(rng.randrange(1, 300)) + (rng.choice("ABC") if rng.random() < 0.1 else "")
            text = f"{number} {text}" if r >= 0.22 or rng.random() < 0.3 else f"{text} {number}"
        return self._name_case(rng, text)

    def _abbrev(self, rng: random.Random) -> str:
        if rng.random() < 0.75:
            return rng.choice(ABBREVIATIONS)
        letters = [rng.choice(string.ascii_uppercase) for _ in range(rng.randrange(2, 5))]
        return "".join(f"{c}." for c in letters) if rng.random() < 0.4 else "".join(letters)


def _ordinal_suffix(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


@functools.lru_cache(maxsize=8)
def _tables(max_chars: int) -> dict:
    """All pools for ``max_chars``, built once per process."""
    # A word: EN_CHARSET without the space, at least one letter (a regex runs in C
    # over the ~640k entries, several times faster than a Python predicate).
    allowed = re.escape(EN_CHARSET.replace(" ", ""))
    word_ok = re.compile(rf"(?=.*[^\W\d_])[{allowed}]{{1,{max_chars}}}").fullmatch

    en = [(w, c) for w, c in frequency_list("en") if word_ok(w)]
    rare = tuple(w for w, _ in en if len(w) > 1 and not w.endswith("'s"))
    # German and French counts come from corpora of different sizes: each
    # language's counts are scaled to sum to one before they are pooled.
    foreign: list[tuple[str, float]] = []
    for lang in ("de", "fr"):
        pairs = [(w, c) for w, c in frequency_list(lang) if word_ok(w)]
        total = sum(c for _, c in pairs)
        foreign.extend((w, c / total) for w, c in pairs)
    first, last = {}, {}
    for locale in NAME_LOCALES:
        f, l = _names_pool(locale, "first_names", max_chars), _names_pool(locale, "last_names",
                                                                          max_chars)
        if f is not None and l is not None:
            first[locale], last[locale] = f, l
    if not first:
        raise UsageError("--lang en needs the 'faker' package for names: pip install faker")
    places = _place_pools(max_chars)
    return {
        "words": Pool.weighted(en), "rare": Pool(rare),
        "foreign": Pool.weighted(foreign),
        "foreign_rare": Pool(tuple(w for w, _ in foreign)),
        "accented": Pool(tuple(w for w, _ in foreign if ACCENTED.intersection(w))),
        "first": first, "last": last, "places": places,
    }
