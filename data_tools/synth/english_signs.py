"""Numbers as signs, shop fronts, labels and forms write them.

One entry point, ``number(rng)``: a price ("$4.99", "£12", "€3,50", "3,50 €"), a
time ("9:30", "24/7", "9am-5pm"), a date ("12.05.2024", "05/12/24"), a phone
number, a code ("A4", "B-12", "No.5", "M25", "SW1A 1AA"), a percentage ("-20%"),
or a plain, ordinal or measured number ("1,000", "3rd", "500 ml"). The shares are
in ``NUMBER_MIX``; every string uses only ``EN_CHARSET`` (english.py). Formats
follow their countries: pounds and dollars with a decimal point, euros mostly
with a decimal comma and often the sign after the amount.
"""

from __future__ import annotations

import random
import string

NUMBER_MIX: dict[str, float] = {
    "price": 0.25, "time": 0.12, "date": 0.12, "phone": 0.10, "code": 0.16, "percent": 0.08,
    "plain": 0.17,
}

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
           "January", "March", "April", "June", "July", "August", "October", "December")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_UNITS = ("km", "m", "cm", "mm", "kg", "g", "mg", "ml", "l", "L", "mph", "km/h", "V", "W",
          "kW", "mAh", "GB", "MB", "TB", "Hz", "lbs", "lb", "oz", "ft", "in", "yd", "min", "h",
          "sec", "pcs", "x")
_CODE_WORDS = ("Gate", "Room", "Apt", "Unit", "Level", "Exit", "Platform", "Bus", "Route",
               "Flat", "Suite", "Bay", "Dock", "Terminal", "Row", "Seat", "Table", "Box",
               "Zone", "Aisle", "Floor", "Block", "Lot", "Pier", "Track")
_FIXED_CODES = ("A4", "A3", "3D", "4K", "5G", "4G", "MP3", "COVID-19", "A-Z", "24/7", "7-Eleven",
                "B2B", "G7", "F1", "R2-D2", "C3PO", "V8", "X5", "Q7", "PS5", "i7", "v2.0", "1.5L")


def _pick(rng: random.Random, shares: dict[str, float]) -> str:
    x = rng.random() * sum(shares.values())
    for key, share in shares.items():
        x -= share
        if x < 0:
            return key
    return next(reversed(list(shares)))


def _magnitude(rng: random.Random) -> int:
    """An amount whose number of digits is spread out (1-9 most often)."""
    r = rng.random()
    if r < 0.40:
        return rng.randrange(1, 10)
    if r < 0.75:
        return rng.randrange(10, 100)
    if r < 0.90:
        return rng.randrange(100, 1000)
    return rng.randrange(1000, 100000)


def _grouped(n: int, sep: str) -> str:
    return f"{n:,}".replace(",", sep)


def price(rng: random.Random) -> str:
    whole = _magnitude(rng)
    r = rng.random()
    if r < 0.35:
        cents = None
    else:
        cents = rng.choice((99, 95, 49, 50, 0)) if r < 0.65 else rng.randrange(100)
    currency = _pick(rng, {"$": 0.45, "£": 0.25, "€": 0.25, "none": 0.05})
    if currency == "£" and rng.random() < 0.05:
        return f"{rng.randrange(1, 100)}p"
    if currency == "€" and rng.random() < 0.7:
        amount = _grouped(whole, ".") + (f",{cents:02d}" if cents is not None else "")
        if cents is not None and rng.random() < 0.1:
            amount = f"{_grouped(whole, '.')},-"
    else:
        amount = _grouped(whole, ",") + (f".{cents:02d}" if cents is not None else "")
    if currency == "none":
        return amount
    if currency == "€" and rng.random() < 0.5:
        return f"{amount} €" if rng.random() < 0.6 else f"{amount}€"
    if currency == "$" and rng.random() < 0.05:
        return f"US${amount}"
    return f"{currency}{amount}"


def time_(rng: random.Random) -> str:
    h24, minute = rng.randrange(24), rng.choice((0, 0, 0, 15, 30, 30, 45, rng.randrange(60)))
    h12 = h24 % 12 or 12
    ampm = rng.choice(("am", "pm", "AM", "PM", "a.m.", "p.m."))
    form = rng.randrange(9)
    if form == 0:
        return f"{h24}:{minute:02d}"
    if form == 1:
        return f"{h24:02d}:{minute:02d}"
    if form == 2:
        return f"{h12}{ampm}" if rng.random() < 0.6 else f"{h12} {ampm}"
    if form == 3:
        return f"{h12}:{minute:02d}{ampm}"
    if form == 4:
        return "24/7" if rng.random() < 0.7 else "24h"
    if form == 5:
        return f"{rng.randrange(6, 11)}-{rng.randrange(4, 11)}"
    if form == 6:
        return f"{rng.randrange(6, 11)}:00-{rng.randrange(16, 23)}:00"
    if form == 7:
        a, b = sorted(rng.sample(range(7), 2))
        return f"{_DAYS[a]}-{_DAYS[b]}"
    return f"{rng.randrange(6, 11)}am-{rng.randrange(4, 11)}pm"


def date(rng: random.Random) -> str:
    d, m, y = rng.randrange(1, 29), rng.randrange(1, 13), rng.randrange(1890, 2031)
    form = rng.randrange(9)
    if form == 0:
        return f"{d:02d}.{m:02d}.{y}"
    if form == 1:
        return f"{m:02d}/{d:02d}/{y % 100:02d}"
    if form == 2:
        return f"{y}-{m:02d}-{d:02d}"
    if form == 3:
        return f"{d}/{m}/{y}"
    if form == 4:
        return f"{rng.choice(_MONTHS)} {d}"
    if form == 5:
        return f"{d} {rng.choice(_MONTHS)} {y}"
    if form == 6:
        return str(y)
    if form == 7:
        return f"{rng.choice(('Est.', 'Since', 'EST.', 'est.', 'Founded'))} {y}"
    return f"'{y % 100:02d}"


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def phone(rng: random.Random) -> str:
    form = rng.randrange(8)
    if form == 0:
        return f"{_digits(rng, 3)}-{_digits(rng, 4)}"
    if form == 1:
        return f"({_digits(rng, 3)}) {_digits(rng, 3)}-{_digits(rng, 4)}"
    if form == 2:
        return f"0{_digits(rng, 2)} {_digits(rng, 4)} {_digits(rng, 4)}"
    if form == 3:
        return f"+44 {_digits(rng, 2)} {_digits(rng, 4)} {_digits(rng, 4)}"
    if form == 4:
        return f"1-800-{_digits(rng, 3)}-{_digits(rng, 4)}"
    if form == 5:
        return f"0{_digits(rng, 1)} " + " ".join(_digits(rng, 2) for _ in range(4))
    if form == 6:
        return f"Tel. {_digits(rng, 4)} {_digits(rng, 6)}"
    return f"+49 {_digits(rng, 2)} {_digits(rng, 7)}"


def code(rng: random.Random) -> str:
    up = string.ascii_uppercase
    form = rng.randrange(10)
    if form == 0:
        return f"{rng.choice(up)}{rng.randrange(1, 100)}"
    if form == 1:
        return f"{rng.choice(up)}-{rng.randrange(1, 1000)}"
    if form == 2:
        return f"{rng.choice(('No.', 'No. ', 'no.', 'Nr.', '#'))}{rng.randrange(1, 100)}"
    if form == 3:
        return f"{rng.choice(_CODE_WORDS)} {rng.randrange(1, 100)}{rng.choice(('', '', 'A', 'B'))}"
    if form == 4:
        return rng.choice(("I-", "M", "A", "Rt ", "US ", "E", "B")) + str(rng.randrange(1, 300))
    if form == 5:  # UK postcode
        area = "".join(rng.choice(up) for _ in range(rng.randrange(1, 3)))
        return f"{area}{rng.randrange(1, 30)} {rng.randrange(10)}{rng.choice(up)}{rng.choice(up)}"
    if form == 6:  # US ZIP, German PLZ
        return _digits(rng, 5)
    if form == 7:  # number plates
        return (f"{rng.choice(up)}{rng.choice(up)}{_digits(rng, 2)} "
                f"{''.join(rng.choice(up) for _ in range(3))}")
    if form == 8:  # model numbers
        return (f"{''.join(rng.choice(up) for _ in range(rng.randrange(1, 4)))}"
                f"{rng.choice(('', '-', ' '))}{rng.randrange(1, 10000)}")
    return rng.choice(_FIXED_CODES)


def percent(rng: random.Random) -> str:
    value = rng.choice((5, 10, 15, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 100, rng.randrange(101)))
    text = f"{value}%" if rng.random() < 0.85 else f"{value / 10:.1f}%"
    form = rng.randrange(6)
    if form == 0:
        return f"-{text}"
    if form == 1:
        return f"{text} {rng.choice(('OFF', 'off', 'Off'))}"
    if form == 2:
        return f"{rng.choice(('Save', 'SAVE', 'up to', 'Up to', 'SALE'))} {text}"
    return text


def plain(rng: random.Random) -> str:
    n = _magnitude(rng)
    form = rng.randrange(7)
    if form == 0:
        return str(n)
    if form == 1:
        return _grouped(n, rng.choice((",", ".", " "))) if n >= 1000 else str(n)
    if form == 2:
        return f"{n}.{rng.randrange(100)}" if rng.random() < 0.6 else f"{n},{rng.randrange(10)}"
    if form == 3:
        m = n % 100 or 1
        suffix = "th" if 10 <= m % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(m % 10, "th")
        return f"{m}{suffix}"
    if form == 4:
        return f"{n}{rng.choice(('', ' '))}{rng.choice(_UNITS)}"
    if form == 5:
        return rng.choice(("1/2", "1/4", "3/4", "2x", "x2", "x3", "6'2\"", "12\"", "No. 1", "#1"))
    return _digits(rng, rng.randrange(1, 8))


_MAKERS = {"price": price, "time": time_, "date": date, "phone": phone, "code": code,
           "percent": percent, "plain": plain}


def number(rng: random.Random) -> str:
    """One number-bearing label, its form drawn with ``NUMBER_MIX``."""
    return _MAKERS[_pick(rng, NUMBER_MIX)](rng)
