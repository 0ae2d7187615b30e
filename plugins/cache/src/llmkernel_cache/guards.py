"""Guards: after a vector match, before a semantic hit is served.

Embeddings place "How do I reset my password?" and "How do I not reset my
password?" at a cosine of 0.978, closer than a true paraphrase; no threshold keeps
such look-alikes apart. Each guard here reads both prompts for one thing that
changes the answer and that embeddings blur, and rejects the candidate when the two
prompts differ in it:

``negation``
    the count of negation cues (not, n't, no, never, without, cannot, unable, ...
    and their Spanish, French, German and Portuguese forms).
``numbers``
    the numbers (digits, number words, fractions; in any order), the quantities
    (a number with its unit: ``100 °F``, ``$50``, ``5 km``) and every unit named.
``entities``
    names (capitalized inside a sentence, acronyms, words with digits, quoted
    text, identifiers, file names), each of which must occur in the other prompt.
``order``
    the same things in another order: the same words rearranged, or two words
    swapped across the same relation word (than, from, to, into, by, ...).
``antonyms``
    a word of one prompt whose opposite is in the other (enable / disable,
    increase / decrease, on / off, un- / dis- / in- prefixes), or a comparative or
    superlative replaced by another (largest / smallest, cheapest / fastest).
``dates``
    dates and times: weekdays, months, seasons, parts of the day, am / pm,
    today / tomorrow / yesterday, this / next / last week, before / after,
    ago / since / until.
``substitution``
    prompts word for word the same but for one meaningful word (or a few in a
    row) each, not known synonyms: the slot a name or a thing fills, typed in
    lower case (``capital of australia`` / ``capital of austria``, ``a joke about
    cats`` / ``about dogs``).

The guards are deliberately strict: a rejection only costs a call to the model,
a wrong hit serves a wrong answer. Their vocabulary is English first, with the
commonest negations and dates of a few other languages; a prompt outside it is
still held to the numbers, names, order and swap checks.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from fractions import Fraction

import attrs

__all__ = ["GUARDS", "Features", "check", "features"]

from llmkernel_cache.settings import GUARDS  # every guard, in the order they run


def _words(text: str) -> list[str]:
    """The words of a vocabulary written as text."""
    return text.split()


# ---------------------------------------------------------------------- vocabulary

_NEGATIONS = frozenset(
    _words("""not no never without none nobody nothing neither nor cannot n't unable nowhere
    nunca sin ningún ninguna ninguno jamás nada nadie
    ne pas jamais sans aucun aucune rien personne
    nicht kein keine keinen keinem keiner nie niemals ohne nichts niemand
    não nem sem nenhum nenhuma""")
)
# "no" is a negation in English and Spanish; French "ne ... pas" counts as one
_PAIRED = {"ne": "pas"}

_STOPWORDS = frozenset(
    _words("""a an the and or but if of at by for with about to from in on into onto over
    under as is are was were be been being am do does did done doing have has had
    having can could would should will shall may might must i me my mine we us our
    you your yours he him his she her it its they them their this that these those
    there here what which who whom whose when where why how whats hows wheres whos
    please tell give show explain list describe let lets just also so very really
    some any all each every such than then too up down out off s t d ll m re ve
    's 'm 're 've 'll 'd much many get make want need know like way one thing things
    le la les un une des du de est et en au aux quel quelle quels quelles qui que
    el los las y es del al cuál cual qué que cómo como
    der die das ein eine ist und zu zur zum den dem des wie welche welcher welches hat
    o os as um uma é e do da dos das""")
)

_NUMBER_WORDS: dict[str, int | Fraction] = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
    "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
    "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40,
    "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
    "dozen": 12, "half": Fraction(1, 2), "quarter": Fraction(1, 4),
}  # fmt: skip
_MULTIPLIERS = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6,
    "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10, "last": -1,
}  # fmt: skip

# units: any spelling -> one name. Short or ambiguous spellings count only right
# after a number ("5 m", "3pm"), the rest anywhere ("in miles").
_UNITS = {
    "fahrenheit": "degF", "celsius": "degC", "centigrade": "degC", "kelvin": "K",
    "degree": "deg", "degrees": "deg",
    "km": "km", "kilometer": "km", "kilometre": "km", "kilometers": "km", "kilometres": "km",
    "meter": "m", "metre": "m", "meters": "m", "metres": "m",
    "cm": "cm", "centimeter": "cm", "centimeters": "cm", "centimetre": "cm",
    "mm": "mm", "millimeter": "mm", "millimeters": "mm",
    "mile": "mi", "miles": "mi", "foot": "ft", "feet": "ft", "ft": "ft",
    "inch": "in", "inches": "in", "yard": "yd", "yards": "yd",
    "mph": "mph", "km/h": "km/h", "kph": "km/h", "kmh": "km/h",
    "kg": "kg", "kilogram": "kg", "kilograms": "kg", "kilo": "kg", "kilos": "kg",
    "gram": "g", "grams": "g", "mg": "mg", "milligram": "mg", "milligrams": "mg",
    "lb": "lb", "lbs": "lb", "pound": "lb", "pounds": "lb",
    "oz": "oz", "ounce": "oz", "ounces": "oz", "ton": "t", "tons": "t", "tonne": "t",
    "tonnes": "t", "ml": "ml", "milliliter": "ml", "milliliters": "ml", "millilitre": "ml",
    "liter": "l", "liters": "l", "litre": "l", "litres": "l",
    "cup": "cup", "cups": "cup", "tablespoon": "tbsp", "tablespoons": "tbsp", "tbsp": "tbsp",
    "teaspoon": "tsp", "teaspoons": "tsp", "tsp": "tsp", "gallon": "gal", "gallons": "gal",
    "pint": "pt", "pints": "pt",
    "byte": "B", "bytes": "B", "kb": "kB", "kilobyte": "kB", "kilobytes": "kB",
    "mb": "MB", "megabyte": "MB", "megabytes": "MB", "gb": "GB", "gigabyte": "GB",
    "gigabytes": "GB", "tb": "TB", "terabyte": "TB", "terabytes": "TB",
    "usd": "USD", "dollar": "USD", "dollars": "USD", "eur": "EUR", "euro": "EUR",
    "euros": "EUR", "gbp": "GBP", "sterling": "GBP", "jpy": "JPY", "yen": "JPY",
    "percent": "%", "pct": "%",
    "second": "s", "seconds": "s", "sec": "s", "secs": "s", "minute": "min",
    "minutes": "min", "min": "min", "mins": "min", "hour": "h", "hours": "h", "hr": "h",
    "hrs": "h", "day": "day", "days": "day", "week": "week", "weeks": "week",
    "month": "month", "months": "month", "year": "year", "years": "year",
    "am": "am", "pm": "pm", "bedroom": "bedroom", "bedrooms": "bedroom",
}  # fmt: skip
_AFTER_NUMBER = {
    "f": "degF", "c": "degC", "m": "m", "g": "g", "l": "l", "s": "s", "h": "h",
    "k": "k", "b": "B", "x": "x", "p": "p", "a.m.": "am", "p.m.": "pm",
}  # fmt: skip
# units that are also ordinary words: only as units right after a number
_WORDLIKE_UNITS = frozenset(
    _words("second minute day week month year cup pound ton foot yard degree am pm")
)
_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "%": "%", "°f": "degF", "°c": "degC"}
_TIME_UNITS = frozenset({"s", "min", "h", "day", "week", "month", "year"})

_WEEKDAYS = _words("""monday tuesday wednesday thursday friday saturday sunday
    lundi mardi mercredi jeudi vendredi samedi dimanche
    lunes martes miércoles jueves viernes sábado domingo
    montag dienstag mittwoch donnerstag freitag samstag sonntag""")
_MONTHS = _words("""january february march april may june july august september october
    november december janvier février mars avril mai juin juillet août septembre
    octobre novembre décembre enero febrero marzo abril mayo junio julio agosto
    septiembre octubre noviembre diciembre januar februar märz juni juli oktober
    dezember""")
_MONTH_ABBREVIATIONS = _words("jan feb mar apr jun jul aug sep sept oct nov dec")
_TIMES = frozenset(
    _words("""today tonight tomorrow yesterday now currently ago since until till later
    earlier soon before after morning afternoon evening night noon midnight
    dawn dusk sunrise sunset spring summer autumn winter weekend weekday eve
    christmas easter thanksgiving halloween century decade
    aujourd'hui demain hier ce soir matin nuit hoy mañana ayer noche heute morgen
    gestern abend nacht""")
)
_RELATIVE = frozenset(_words("this next last past previous coming upcoming current"))
_PERIODS = frozenset(
    _words("week month year weekend day night morning afternoon evening quarter decade")
    + _words("century season time")
)

_RELATIONS = frozenset(
    _words("than from to into by over versus vs before after minus divided per against")
    + _words("onto toward towards times")
)

_ANTONYM_PAIRS = _words("""enable disable increase decrease increase reduce gain lose win lose
    on off up down in out upload download add remove add subtract open close lower raise
    before after pro con pros cons advantage disadvantage encrypt decrypt strong weak
    start stop start end begin end more less more fewer better worse best worst buy sell
    push pull import export include exclude accept reject allow deny allow block
    connect disconnect install uninstall lock unlock mount unmount show hide enter exit
    arrive depart input output min max minimum maximum maximize minimize true false
    positive negative rise fall hot cold warm cool light dark heavy light high low
    long short tall short old young old new fast slow quick slow early late cheap
    expensive easy hard easy difficult safe dangerous safe unsafe happy sad rich poor
    love hate like dislike above below over under inside outside first last top bottom
    front back left right north south east west upgrade downgrade ascending descending
    forward backward send receive lend borrow male female men women man woman boy girl
    husband wife day night summer winter sunrise sunset plus minus multiply divide
    inhale exhale wet dry full empty clean dirty thick thin wide narrow deep shallow
    loud quiet soft hard raw cooked alive dead asleep awake entry exit import export
    internal external inbound outbound incoming outgoing private public optional
    required success failure pass fail valid invalid legal illegal present absent
    always never often rarely most least higher lower larger smaller bigger smaller
    hotter colder faster slower cheaper pricier sooner later nearer farther closer
    farther inhale exhale freeze melt hire fire mortgage rent borrow repay""")
_ADJECTIVES = _words("""big small large little huge tiny hot cold warm cool fast slow quick
    cheap high low long short tall old young new strong weak heavy light easy hard
    early late safe good bad great rich poor close near far deep shallow wide narrow
    thick thin loud quiet soft bright dark clean dirty healthy sweet fresh rare common
    simple smart busy popular expensive efficient powerful dangerous important
    difficult beautiful reliable secure accurate""")
_IRREGULAR = _words("""better best worse worst more most less least fewer fewest further
    furthest farther farthest elder eldest""")

# synonyms a paraphrase swaps freely (a one-word swap between two of them is fine)
_SYNONYMS = [
    "write compose create draft generate make",
    "tell give show",
    "explain describe",
    "fix repair",
    "buy purchase",
    "big large huge",
    "small little tiny",
    "quick fast rapid speedy",
    "brief short",
    "car automobile",
    "movie film",
    "colour color",
    "start begin",
    "help assist",
    "use utilize",
    "get obtain",
    "find locate",
    "choose pick select",
    "recommend suggest",
    "job work",
    "picture photo image",
    "sofa couch",
    "kid child",
    "shop store",
    "autumn fall",
    "necktie tie",
    "steps way ways",
    "symptom sign",
    "times multiply multiplied",
]

_TOKEN = re.compile(
    r"""[$€£¥]                                  # currency sign
      | °\s?[fcFC]\b                            # degrees
      | \d+(?:[.,:]\d+)*(?:/\d+)?[a-zA-Z]*      # number, with a glued unit (3pm, 5km)
      | km/h
      | [a-zA-Z]\.[a-zA-Z]\.                     # a.m., p.m., U.S.
      | [^\W\d_]+(?:[-'][^\W\d_]+)*(?:\d+[^\W_]*)?  # words (gluten-free, don't, Q1)
      | [^\W\d_]*[\w]*(?:[._/][\w]+)+           # identifiers, file names, paths
      | %
      | n't
      | ['"\u2018\u2019\u201c\u201d«»]     # quotes
    """,
    re.VERBOSE,
)
_CONTRACTION = re.compile(r"([^\W\d_]+)'(m|re|ve|ll|d|s)")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'"})
_QUOTED = re.compile(r"""(?:^|[\s(])['"\u201c\u2018«](.+?)['"\u201d\u2019»](?=$|[\s).,;:!?])""")
_SENTENCE_END = frozenset(".?!¿¡:;")


def _stem(word: str) -> str:
    """A light stem, the same for the forms a paraphrase swaps (plural, -ing, -ed,
    -ly, a final e, a possessive): only ever compared with another stem."""
    w = word.lower()
    if w.endswith("'s"):
        w = w[:-2]
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif len(w) > 4 and w.endswith(("ches", "shes", "sses", "xes", "zes")):
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is", "'s")):
        w = w[:-1]
    for suffix in ("ing", "ed", "ly"):
        if len(w) > len(suffix) + 3 and w.endswith(suffix):
            w = w[: -len(suffix)]
            break
    if len(w) > 4 and w.endswith("e"):
        w = w[:-1]
    return w


def _pairs(words: Sequence[str]) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for first, second in zip(words[::2], words[1::2], strict=True):
        a, b = _stem(first), _stem(second)
        out.setdefault(a, set()).add(b)
        out.setdefault(b, set()).add(a)
    return {k: frozenset(v) for k, v in out.items()}


_ANTONYMS = _pairs(_ANTONYM_PAIRS)
_SCALAR = frozenset(
    _stem(w)
    for adjective in _ADJECTIVES
    for w in (
        adjective,
        adjective + "er",
        adjective + "est",
        adjective + adjective[-1] + "er",
        adjective + adjective[-1] + "est",
        adjective[:-1] + "ier" if adjective.endswith("y") else adjective + "r",
        adjective[:-1] + "iest" if adjective.endswith("y") else adjective + "st",
    )
) | frozenset(_stem(w) for w in _IRREGULAR)
_SYNONYM_OF = {_stem(w): _words(group)[0] for group in _SYNONYMS for w in _words(group)}
_PREFIXES = ("un", "in", "im", "il", "ir", "dis", "non", "de", "anti", "mis")
_STOP_STEMS = frozenset(_stem(w) for w in _STOPWORDS) | _STOPWORDS
_NUMBER_STEMS = frozenset(_NUMBER_WORDS) | frozenset(_MULTIPLIERS) | frozenset(_ORDINALS)


# ---------------------------------------------------------------------- features


@attrs.frozen(kw_only=True)
class Features:
    """What the guards compare, read once from a prompt (kept with its entry)."""

    #: every word, stemmed, in order (numbers as their value)
    words: tuple[str, ...]
    #: the words that carry meaning (no stopwords), in order
    content: tuple[str, ...]
    negations: int
    numbers: tuple[str, ...]  # sorted values
    quantities: tuple[tuple[str, str], ...]  # sorted (value, unit)
    units: frozenset[str]
    names: frozenset[str]
    times: frozenset[str]


def _value(text: str) -> str | None:
    """A numeral's canonical value: ``1,000`` -> ``1000``, ``1/4`` -> ``1/4``,
    ``0.50`` -> ``1/2``."""
    text = text.replace(",", "") if re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", text) else text
    text = text.replace(",", ".")
    try:
        if "/" in text:
            top, bottom = text.split("/", 1)
            value = Fraction(int(top), int(bottom))
        elif ":" in text:
            return text  # a clock time
        else:
            value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None
    return str(value)


def _tokens(text: str) -> list[tuple[str, bool, bool]]:
    """``(token, capitalized, starts a sentence)`` in order."""
    out: list[tuple[str, bool, bool]] = []
    start = True
    end = 0
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if any(ch in _SENTENCE_END for ch in text[end : match.start()]):
            start = True
        end = match.end()
        if token in "'\"\u2018\u2019\u201c\u201d«»":
            continue
        lowered = token.lower()
        contraction = _CONTRACTION.fullmatch(lowered)
        if lowered.endswith("n't") and len(lowered) > 3:  # don't -> do n't; can't -> can n't
            head = lowered[:-3]
            head = {"ca": "can", "wo": "will", "sha": "shall"}.get(head, head)
            word = token[: len(head)] if head == lowered[: len(head)] else head
            out.append((word, token[0].isupper(), start))
            out.append(("n't", False, False))
        elif contraction:  # I'm, what's, we've, Tesla's: the word, then the rest
            head = token[: len(contraction.group(1))]
            out.append((head, head[:1].isupper(), start))
            out.append(("'" + contraction.group(2), False, False))
        elif "-" in lowered and any(part in _NUMBER_WORDS for part in lowered.split("-")):
            for i, part in enumerate(token.split("-")):  # two-bedroom, twenty-five
                out.append((part, part[:1].isupper(), start and i == 0))
        else:
            out.append((token, token[:1].isupper(), start))
        start = False
    return out


def features(text: str) -> Features:
    """The guards' view of ``text`` (a user's prompt)."""
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)
    tokens = _tokens(text)
    words: list[str] = []
    content: list[str] = []
    negations = 0
    numbers: list[str] = []
    quantities: list[tuple[str, str]] = []
    units: set[str] = set()
    names: set[str] = set()
    times: set[str] = set()
    paired_open = False
    pending: str | None = None  # a number waiting for its unit
    pending_words: list[str] = []  # number words being summed
    currency: str | None = None  # a currency sign waiting for its number

    def number(value: str, unit: str | None = None) -> None:
        nonlocal pending, currency
        numbers.append(value)
        words.append(value)
        content.append(value)
        if currency is not None:
            quantities.append((value, currency))
            units.add(currency)
            currency = None
        if unit is not None:
            quantities.append((value, unit))
            units.add(unit)
            pending = None
        else:
            pending = value

    def flush_words() -> None:
        if not pending_words:
            return
        total: Fraction = Fraction(0)
        current: Fraction = Fraction(0)
        for w in pending_words:
            if w in _MULTIPLIERS:
                current = (current or Fraction(1)) * _MULTIPLIERS[w]
                if _MULTIPLIERS[w] >= 1000:
                    total, current = total + current, Fraction(0)
            else:
                current += Fraction(_NUMBER_WORDS[w])
        pending_words.clear()
        number(str(total + current))

    for index, (token, capitalized, starts) in enumerate(tokens):
        lowered = token.lower()
        if pending_words and lowered not in _NUMBER_WORDS and lowered not in _MULTIPLIERS:
            flush_words()
        # ---- symbols and numbers
        if lowered in _SYMBOLS:
            sign = _SYMBOLS[lowered]
            if sign in ("USD", "EUR", "GBP", "JPY"):
                currency = sign
            elif pending is not None:
                quantities.append((pending, sign))
                units.add(sign)
                pending = None
            else:
                units.add(sign)
            words.append(sign)
            content.append(sign)
            continue
        glued = re.fullmatch(r"(\d+(?:[.,:]\d+)*(?:/\d+)?)([a-zA-Z]*)", token)
        if glued:
            value = _value(glued.group(1))
            suffix = glued.group(2).lower()
            if re.fullmatch(r"\d{4}", glued.group(1)) and suffix == "s":  # the 1980s
                times.add(glued.group(1) + "s")
                suffix = ""
            unit = _AFTER_NUMBER.get(suffix) or _UNITS.get(suffix) if suffix else None
            if suffix and unit is None:  # Q1-like code or 4K: a name with digits
                names.add(lowered)
            if value is not None:
                number(value, unit)
                if unit is not None:
                    words.append(unit)
                    content.append(unit)
                if unit in ("am", "pm"):
                    times.add(unit)
            else:
                names.add(lowered)
                words.append(lowered)
                content.append(lowered)
            continue
        if lowered in _NUMBER_WORDS or (lowered in _MULTIPLIERS and pending_words):
            if lowered in ("half", "quarter") and pending_words:
                flush_words()
            pending_words.append(lowered)
            continue
        if lowered in _ORDINALS and not (lowered == "second" and pending is not None):
            value = f"#{_ORDINALS[lowered]}"
            words.append(value)
            content.append(value)
            continue
        # ---- units
        unit = None
        if pending is not None:
            unit = _AFTER_NUMBER.get(lowered) or _UNITS.get(lowered)
            if unit == "deg":  # 100 degrees Fahrenheit: the scale is the unit
                following = tokens[index + 1][0].lower() if index + 1 < len(tokens) else ""
                if _UNITS.get(following) in ("degF", "degC", "K"):
                    continue
        elif lowered in _UNITS and lowered not in _WORDLIKE_UNITS:
            unit = _UNITS[lowered]
        if unit is not None:
            if pending is not None:
                quantities.append((pending, unit))
                pending = None
            units.add(unit)
            if unit in ("am", "pm"):
                times.add(unit)
            words.append(unit)
            content.append(unit)
            continue
        pending = None
        currency = None
        stem = _stem(token)
        # ---- negation
        if lowered in _NEGATIONS:
            words.append("not")  # one spelling: "don't" and "do not" read the same
            if lowered == "pas" and paired_open:
                paired_open = False
                continue
            negations += 1
            paired_open = lowered in _PAIRED
            continue
        words.append(stem)
        # ---- dates and times
        if lowered in _WEEKDAYS or lowered in _TIMES:
            times.add(lowered)
        elif lowered in _MONTHS or lowered in _MONTH_ABBREVIATIONS:
            nearby = [t[0] for t in tokens[max(0, index - 1) : index + 2]]
            dated = any(t[:1].isdigit() for t in nearby)
            if capitalized or dated or lowered not in ("may", "march"):
                times.add(lowered if lowered not in _MONTH_ABBREVIATIONS else lowered[:3])
        elif lowered == "fall" and index and tokens[index - 1][0].lower() in ("the", "in"):
            times.add("autumn")
        elif lowered in _RELATIVE and index + 1 < len(tokens):
            following = tokens[index + 1][0].lower()
            if (
                following in _PERIODS
                or following in _WEEKDAYS
                or _UNITS.get(following)
                in (
                    "day",
                    "week",
                    "month",
                    "year",
                )
            ):
                times.add(f"{lowered} {_UNITS.get(following, following)}")
        if lowered in _STOPWORDS or stem in _STOP_STEMS:
            continue
        # ---- names
        letters = [ch for ch in token if ch.isalpha()]
        shouting = len(letters) >= 2 and all(ch.isupper() for ch in letters)
        if (
            (capitalized and not starts and lowered != "i")
            or shouting
            or any(ch.isdigit() for ch in token)
            or re.search(r"\w[._/]\w", token)
        ):
            names.add(_stem(token))
        content.append(_SYNONYM_OF.get(stem, stem))
    flush_words()
    for quoted in _QUOTED.findall(text):
        names.add("“" + " ".join(quoted.lower().split()) + "”")
    return Features(
        words=tuple(words),
        content=tuple(content),
        negations=negations,
        numbers=tuple(sorted(numbers)),
        quantities=tuple(sorted(quantities)),
        units=frozenset(units),
        names=frozenset(names),
        times=frozenset(times),
    )


# ---------------------------------------------------------------------- the guards


def _negation(a: Features, b: Features) -> bool:
    return a.negations == b.negations


def _numbers(a: Features, b: Features) -> bool:
    return a.numbers == b.numbers and a.quantities == b.quantities and a.units == b.units


def _all_words(f: Features) -> frozenset[str]:
    return frozenset(f.words) | frozenset(f.content)


def _entities(a: Features, b: Features) -> bool:
    for mine, theirs in ((a, b), (b, a)):
        words = _all_words(theirs)
        for name in mine.names:
            if name.startswith("“"):
                if name not in theirs.names:
                    return False
            elif name not in words and name not in theirs.names:
                return False
    return True


def _substitution(a: Features, b: Features) -> bool:
    return not _one_word_swapped(a.words, b.words)


def _one_word_swapped(a: Sequence[str], b: Sequence[str]) -> bool:
    """The prompts are word for word the same but for one meaningful word (or two in
    a row) each, and those are not synonyms: a slot filled differently ("capital of
    australia" / "capital of austria")."""
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    changes = [op for op in matcher.get_opcodes() if op[0] != "equal"]
    if len(changes) != 1 or changes[0][0] != "replace":
        return False
    _, i1, i2, j1, j2 = changes[0]
    if i2 - i1 > 3 or j2 - j1 > 3 or len(a) - (i2 - i1) < 1:
        return False
    mine = [_SYNONYM_OF.get(w, w) for w in a[i1:i2] if w not in _STOP_STEMS]
    theirs = [_SYNONYM_OF.get(w, w) for w in b[j1:j2] if w not in _STOP_STEMS]
    return bool(mine) and bool(theirs) and mine != theirs


def _order(a: Features, b: Features) -> bool:
    ca, cb = a.content, b.content
    once_a = [w for w, n in Counter(ca).items() if n == 1]
    once_b = {w for w, n in Counter(cb).items() if n == 1}
    shared = [w for w in once_a if w in once_b]
    if len(shared) < 2:
        return True
    pos_a = {w: ca.index(w) for w in shared}
    pos_b = {w: cb.index(w) for w in shared}
    # the same words rearranged ("can a cat eat dog food" / "can a dog eat cat food")
    same_words = Counter(a.words) == Counter(b.words)
    relations_a = _relations(a.words)
    relations_b = _relations(b.words)
    words_a, words_b = a.words, b.words
    for i, x in enumerate(shared):
        for y in shared[i + 1 :]:
            if (pos_a[x] < pos_a[y]) == (pos_b[x] < pos_b[y]):
                continue
            if same_words:
                return False
            # a swap across the same relation word, in both prompts
            xa, ya = words_a.index(x), words_a.index(y)
            xb, yb = words_b.index(x), words_b.index(y)
            for relation in relations_a & relations_b:
                ra = _between(words_a, relation, xa, ya)
                rb = _between(words_b, relation, xb, yb)
                if ra and rb:
                    return False
    return True


def _relations(words: Iterable[str]) -> set[str]:
    return {w for w in words if w in _RELATIONS}


def _between(words: Sequence[str], relation: str, i: int, j: int) -> bool:
    low, high = min(i, j), max(i, j)
    return relation in words[low + 1 : high]


def _antonyms(a: Features, b: Features) -> bool:
    words_a, words_b = set(a.words), set(b.words)
    only_a, only_b = words_a - words_b, words_b - words_a
    if not only_a or not only_b:
        return True
    for word in only_a:
        if _ANTONYMS.get(word, frozenset()) & only_b:
            return False
        if word in _STOP_STEMS:
            continue
        for other in only_b:
            short, long = sorted((word, other), key=len)
            if (
                len(short) > 3
                and other not in _STOP_STEMS
                and any(long == prefix + short for prefix in _PREFIXES)
            ):
                return False
    scalar_a = {_SYNONYM_OF.get(w, w) for w in only_a & _SCALAR}
    scalar_b = {_SYNONYM_OF.get(w, w) for w in only_b & _SCALAR}
    return not (scalar_a and scalar_b and scalar_a != scalar_b)


def _dates(a: Features, b: Features) -> bool:
    return a.times == b.times


_CHECKS = {
    "negation": _negation,
    "numbers": _numbers,
    "entities": _entities,
    "order": _order,
    "antonyms": _antonyms,
    "dates": _dates,
    "substitution": _substitution,
}


def check(stored: Features, asked: Features, guards: Iterable[str] = GUARDS) -> str | None:
    """The first guard that rejects serving ``stored``'s answer for ``asked``, or
    ``None`` when every guard in ``guards`` lets it through."""
    for name in guards:
        if not _CHECKS[name](stored, asked):
            return name
    return None
