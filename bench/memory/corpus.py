#!/usr/bin/env python3
"""Deterministic retrieval corpus for Berth's memory benchmark (stdlib only).

`records(n, seed)` returns exactly `n` memory records `{"content", "namespace"}`: every labelled fact of
`queries.json` once, plus `n - len(facts)` distractors, shuffled deterministically and spread over
1,000 namespaces `/users/user-NNNN/facts` (targets land on random users too). `qrels(records)` maps
each labelled query to the position and namespace of its one relevant record.

Distractors are facts in the extraction model's style ("The user ...", one sentence, 6-20 words) on
the same topics as the targets (diet, health, family, work, travel, hobbies, tech, finance, home,
pets, schedule, preferences), built from templates x vocabularies (`TEMPLATES`). The combinatorial
capacity is over 20 million distinct sentences (`capacity()`). Each topic gets an even share of the
distractors, and each template an even share of its topic's (capped by what it can produce), so no
topic is drowned by the templates with the most combinations.

How "no distractor answers a labelled query" is enforced:
  * Each item of `queries.json` may carry `"exclude": [...]`: phrases that any record answering that
    query would have to contain, written against the vocabularies below (the fact's own answer, its
    synonyms and hypernyms: for "what nuts can't they eat?" every nut; for a spouse's job
    "wife ... works"). Matching is case-insensitive on whole words, with hyphens read as spaces;
    `word*` matches any word starting with `word`; `a ... b` matches `a` followed later in the same
    record by `b`. `Exclusions` compiles them.
  * Vocabulary values that contain an excluded phrase are dropped before any sentence is built, and
    every rendered distractor is checked again (phrases can span slots or the template's own text);
    one that matches is discarded and another is drawn. So no distractor contains any excluded
    phrase, by construction, whatever the seed or `n`.
  * `--check` verifies the output independently of the generator: uniqueness, every fact present
    exactly once, no excluded phrase in any distractor (also cross-checked with a slow, index-free
    matcher on a sample), 6-20 words per record, and for the labelled set: non-empty queries, each
    item's exclusions hit its own fact (they describe the right answer), no item's exclusions hit
    another item's fact (no two facts answer the same query), paraphrase queries share no content
    word with their fact and keyword queries share at least one.
  The phrase lists are only as good as their authors: when adding vocabulary, extend the `exclude`
  lists of the queries it could answer.

Usage:
  python3 bench/memory/corpus.py --n 100000 --stats
  python3 bench/memory/corpus.py --check
  python3 bench/memory/corpus.py --n 100000 --jsonl /tmp/records.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path
from typing import Iterable

QUERIES_PATH = Path(__file__).resolve().with_name("queries.json")
USERS = 1000
WORDS_MIN, WORDS_MAX = 6, 20

# ---------------------------------------------------------------------------------------------
# Labelled items and exclusions
# ---------------------------------------------------------------------------------------------


def load_items(path: Path = QUERIES_PATH) -> list[dict]:
    """The labelled items of `queries.json`: fact, query, kind, topic and optional exclude list."""
    with open(path, encoding="utf-8") as f:
        items = json.load(f)
    for i, item in enumerate(items):
        for key in ("fact", "query", "kind"):
            if not isinstance(item.get(key), str):
                raise ValueError(f"queries.json item {i}: missing string field {key!r}")
        if item["kind"] not in ("paraphrase", "keyword"):
            raise ValueError(f"queries.json item {i}: kind must be paraphrase or keyword")
    return items


_RUN = re.compile(r"[a-z0-9]+")


def normalise(text: str) -> str:
    """Lower case, typographic apostrophes and dashes folded, hyphens read as spaces."""
    text = text.lower().replace("\u2019", "'").replace("\u2013", " ").replace("\u2014", " ")
    return text.replace("-", " ")


def _phrase_regex(phrase: str) -> str:
    parts = []
    for part in normalise(phrase).split(" ... "):
        words = []
        for word in part.split():
            if word.endswith("*"):
                words.append(re.escape(word[:-1]) + "[a-z0-9]*")
            else:
                words.append(re.escape(word))
        # Whole words: no letter or digit may touch the phrase on either side.
        parts.append(r"(?<![a-z0-9])" + r"\s+".join(words) + r"(?![a-z0-9])")
    return ".*?".join(parts)


class Exclusions:
    """Every `exclude` phrase of the labelled items, compiled for fast membership tests.

    A record can only contain a phrase if it contains the phrase's first word (or, for `word*`,
    a word starting with it), so each phrase is indexed by that anchor and only the phrases whose
    anchor occurs in the record are tried; the per-word candidate lists are memoised.
    """

    def __init__(self, items: list[dict]):
        self.phrases: list[tuple[str, int, re.Pattern[str]]] = []
        self._exact: dict[str, list[int]] = {}
        self._prefix: dict[str, list[int]] = {}
        self._memo: dict[str, tuple[int, ...]] = {}
        for item_index, item in enumerate(items):
            for phrase in item.get("exclude", []):
                norm = normalise(phrase).strip()
                if not norm or not _RUN.search(norm):
                    raise ValueError(f"empty exclude phrase in item {item_index}: {phrase!r}")
                pid = len(self.phrases)
                self.phrases.append((phrase, item_index, re.compile(_phrase_regex(norm))))
                first_word = norm.split()[0]
                anchor = _RUN.search(first_word).group(0)  # type: ignore[union-attr]
                if first_word.endswith("*") and first_word[:-1] == anchor:
                    self._prefix.setdefault(anchor, []).append(pid)
                else:
                    self._exact.setdefault(anchor, []).append(pid)
        self._prefix_lens = sorted({len(p) for p in self._prefix})

    def _candidates(self, run: str) -> tuple[int, ...]:
        hit = self._memo.get(run)
        if hit is None:
            ids = list(self._exact.get(run, ()))
            for length in self._prefix_lens:
                if length > len(run):
                    break
                ids.extend(self._prefix.get(run[:length], ()))
            hit = self._memo[run] = tuple(ids)
        return hit

    def match(self, text: str, skip_item: int | None = None) -> tuple[str, int] | None:
        """The first excluded phrase in `text` as `(phrase, item index)`, or None."""
        norm = normalise(text)
        seen: set[int] = set()
        for run in _RUN.findall(norm):
            for pid in self._candidates(run):
                if pid in seen:
                    continue
                seen.add(pid)
                phrase, item_index, rx = self.phrases[pid]
                if item_index != skip_item and rx.search(norm):
                    return phrase, item_index
        return None

    def match_slow(self, text: str) -> tuple[str, int] | None:
        """Same answer as `match` without the anchor index: every phrase is tried (for checks)."""
        norm = normalise(text)
        for phrase, item_index, rx in self.phrases:
            if rx.search(norm):
                return phrase, item_index
        return None

    def matches_for_item(self, text: str, item_index: int) -> list[str]:
        """The phrases of one item that occur in `text`."""
        norm = normalise(text)
        return [p for p, i, rx in self.phrases if i == item_index and rx.search(norm)]


# ---------------------------------------------------------------------------------------------
# Vocabularies
# ---------------------------------------------------------------------------------------------
# Plain data. Values may contain excluded phrases; they are filtered out before use, but a topic
# keeps its realism only if most values survive, so prefer clean values when adding.

FEMALE_NAMES = """Olivia Emma Ava Sophia Isabella Charlotte Amelia Harper Evelyn Abigail Emily Ella Camila
Luna Sofia Avery Scarlett Eleanor Madison Layla Penelope Aria Chloe Nora Lily Riley Victoria Aurora
Hazel Violet Stella Ellie Lucy Naomi Elena Maya Leah Ruby Alice Clara Ivy Iris Julia Margot Nadia
Anika Fatima Aisha Mei Yuki Ingrid Freya Astrid Lucia Carmen Beatriz Leila Noor Tara Keiko Sunita
Olga Dana Greta Imogen Rhea Selma""".split()
MALE_NAMES = """Liam Noah Oliver Elijah James William Benjamin Lucas Henry Mason
Michael Ethan Logan Jacob Jackson Levi Sebastian Mateo Jack Owen Samuel Wyatt John David Joseph
Carter Luke Julian Isaac Gabriel Anthony Dylan Leo Lincoln Asher Christopher Josiah Andrew Thomas
Ezra Hudson Charles Caleb Isaiah Ryan Nathan Adrian Eli Nolan Aaron Cameron Colton Jordan Ravi Arjun
Kenji Hiroshi Diego Rafael Omar Tariq Kwame Felix Hugo Oscar Emil Lars Sven Pavel Dmitri Ahmed Yusuf
Malik Andre Jonah Simon Victor Peter Frank Walter Idris Bruno Matteo Finn Rowan""".split()
NAMES = FEMALE_NAMES + MALE_NAMES

SURNAMES = """Patel Nguyen Kim Garcia Martinez Chen Okonkwo Schmidt Rossi Kowalski Johansson Murphy
O'Brien Tanaka Sato Haddad Cohen Silva Fernandes Novak Ivanova Andersen Dubois Moreau Hughes Bennett
Price Reyes Ortiz Ramos Khan Ali Singh Sharma Mehta Park Choi Lee Wong Tran Pham Abebe Mensah Adeyemi
Walsh Byrne Lindqvist Berg Nakamura Yilmaz Demir Kaya Rahman Hossain Castillo Vargas Morales Romero
Alvarez Foster Gray Brooks Hayes Coleman Fischer Weber Wagner Becker Keller Horvat""".split()

CITIES = [
    "Denver", "Austin", "Chicago", "Boston", "Atlanta", "Phoenix", "Minneapolis", "Pittsburgh",
    "Baltimore", "Nashville", "Raleigh", "Sacramento", "Salt Lake City", "Albuquerque", "Tucson",
    "Omaha", "Milwaukee", "Cleveland", "Detroit", "Columbus", "Cincinnati", "Richmond", "Charleston",
    "Savannah", "Orlando", "Tampa", "Miami", "New Orleans", "Houston", "Dallas", "San Antonio",
    "Kansas City", "St. Louis", "Portland", "Seattle", "Spokane", "Boise", "Honolulu", "San Diego",
    "Los Angeles", "Oakland", "San Jose", "Toronto", "Montreal", "Vancouver", "Calgary", "Ottawa",
    "London", "Manchester", "Edinburgh", "Dublin", "Paris", "Lyon", "Marseille", "Berlin", "Munich",
    "Hamburg", "Vienna", "Zurich", "Amsterdam", "Rotterdam", "Brussels", "Copenhagen", "Stockholm",
    "Oslo", "Helsinki", "Warsaw", "Prague", "Budapest", "Madrid", "Barcelona", "Seville", "Porto",
    "Rome", "Milan", "Naples", "Athens", "Istanbul", "Cairo", "Nairobi", "Lagos", "Johannesburg",
    "Mumbai", "Bangalore", "Delhi", "Singapore", "Bangkok", "Hanoi", "Seoul", "Tokyo", "Osaka",
    "Sydney", "Melbourne", "Auckland", "Mexico City", "Bogota", "Lima", "Santiago", "Sao Paulo",
    "Montevideo",
]
EUROPE_RAIL = ["Vienna", "Munich", "Zurich", "Paris", "Lyon", "Amsterdam", "Brussels", "Berlin",
               "Hamburg", "Prague", "Milan", "Rome", "Copenhagen", "Stockholm", "London", "Madrid",
               "Barcelona", "Budapest"]

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
WORKDAYS = WEEKDAYS[:5]
SEASONS = ["spring", "summer", "fall", "winter"]
DAYPARTS = ["morning", "afternoon", "evening"]
TIMES = ["7:30 am", "8:15 am", "8:45 am", "9:20 am", "11:40 am", "12:30 pm", "1:15 pm", "2:45 pm",
         "4:20 pm", "5:30 pm", "6:45 pm", "7:15 pm", "8:10 pm"]
PAST_YEARS = [str(y) for y in range(2004, 2024)]
RECENT_YEARS = [str(y) for y in range(2019, 2024)]
FUTURE_YEARS = [str(y) for y in range(2025, 2033)]

REL_ALL = ["wife", "husband", "partner", "son", "daughter", "brother", "sister", "mother", "father",
           "grandmother", "grandfather", "aunt", "uncle", "cousin", "niece", "nephew", "roommate",
           "best friend", "coworker", "neighbor", "mother-in-law", "father-in-law",
           "brother-in-law", "sister-in-law"]
# Relatives whose home town or job never tells where the user's parents live or what the spouse
# does; see the exclusions of those two queries.
REL_KIN = ["son", "daughter", "brother", "sister", "grandfather", "aunt", "uncle", "cousin", "niece",
           "nephew", "best friend", "godson", "goddaughter", "brother-in-law", "sister-in-law",
           "roommate", "neighbor"]
CHILDREN = ["son", "daughter", "niece", "nephew", "godson", "goddaughter", "grandson",
            "granddaughter"]
PERSONS = ["The user"] + [f"The user's {r}" for r in REL_ALL]
_FEMALE_RELS = {"wife", "daughter", "sister", "mother", "grandmother", "aunt", "niece",
                "goddaughter", "granddaughter", "sister-in-law", "mother-in-law"}
_MALE_RELS = {"husband", "son", "brother", "father", "grandfather", "uncle", "nephew", "godson",
              "grandson", "brother-in-law", "father-in-law"}


def rel_names(rels: list[str]) -> list[str]:
    """"sister Olivia", "uncle Omar", "cousin Ravi": each relation with names of a fitting gender."""
    out = []
    for rel in rels:
        if rel in _FEMALE_RELS:
            names = FEMALE_NAMES
        elif rel in _MALE_RELS:
            names = MALE_NAMES
        else:
            names = NAMES
        out.extend(f"{rel} {name}" for name in names)
    return out

ALLERGENS = ["shellfish", "shrimp", "penicillin", "latex", "sesame", "soy", "eggs", "kiwi",
             "strawberries", "mustard", "sulfa drugs", "cats", "dust mites", "ragweed pollen",
             "avocado", "celery", "wheat", "horses", "aspirin"]
DIETS = ["keto", "paleo", "Mediterranean", "low-FODMAP", "halal", "low-carb",
         "high-protein", "anti-inflammatory", "whole-food", "low-fat", "DASH"]
DIET_REASONS = ["better energy", "digestive comfort", "athletic training", "their doctor's advice",
                "clearer skin", "steadier focus at work", "family tradition"]
CUISINES = ["Ethiopian", "Korean", "Peruvian", "Lebanese", "Sichuan", "Georgian", "Oaxacan",
            "Turkish", "Greek", "Nepali", "Basque", "Sri Lankan", "Moroccan", "Filipino",
            "Jamaican", "Persian"]
RESTAURANTS = ["The Copper Pot", "Little Fig", "Blue Lantern", "Saffron House", "Golden Ladle",
               "Olive and Ash", "Red Kettle", "Cedar Room", "Marigold", "The Gilded Spoon",
               "Ember and Vine", "Casa Lupe", "Mama Yeni's", "Silk Road Grill", "Noodle Theory",
               "Fig and Thistle", "Tin Roof", "Anchor Bistro", "Lantern Street", "Three Sisters",
               "Pomegranate", "Copper Fox", "Clay Oven", "Night Market", "Paper Crane"]
DISLIKED_FOODS = ["olives", "mushrooms", "eggplant", "anchovies", "licorice", "beets", "okra",
                  "brussels sprouts", "raw onions", "liver", "sardines", "tofu", "capers",
                  "grapefruit", "pickles", "oysters", "mayonnaise", "durian", "kimchi",
                  "black licorice", "raisins", "coconut"]
DISHES = ["pad thai", "chicken tikka masala", "fish tacos", "ramen",
          "bibimbap", "falafel wraps", "pho", "shakshuka", "pierogi", "paella", "lamb kebabs",
          "mushroom risotto", "sushi", "dumplings", "jollof rice", "enchiladas", "gnocchi",
          "beef brisket", "green curry", "lentil soup", "bulgogi", "ceviche"]
DRINKS = ["sparkling water", "kombucha", "orange juice", "coconut water", "lemonade", "ginger ale",
          "cranberry juice", "apple juice", "mineral water", "lime soda", "grape juice",
          "iced water with lemon"]
MEALS = ["lunch", "dinner"]

MED_CONDITIONS = ["albuterol for asthma", "cetirizine for hay fever", "omeprazole for acid reflux",
                  "atorvastatin for high cholesterol", "iron supplements for anemia",
                  "vitamin D for a deficiency", "montelukast for seasonal allergies",
                  "propranolol for stage fright", "allopurinol for gout",
                  "loratadine for pollen allergies", "fluticasone spray for sinus trouble",
                  "famotidine for heartburn", "magnesium for muscle cramps",
                  "a steroid cream for eczema", "probiotics for gut health"]
APPOINTMENTS = ["a dental", "a dermatology", "a hearing", "an allergy", "a cardiology",
                "a podiatry", "an orthodontic", "an annual checkup", "a blood test"]
EXERCISES = ["runs", "swims", "cycles", "rows", "does yoga", "plays tennis", "practices tai chi",
             "skates", "dances", "stretches", "jumps rope", "plays squash"]
MINUTES = ["20", "25", "30", "35", "40", "45", "50", "55", "60", "75", "90"]
PHARMACIES = ["CVS", "Walgreens", "Rite Aid", "Boots", "Costco pharmacy", "Kroger pharmacy"]
STREETS = ["Maple Avenue", "Oak Street", "Elm Street", "Main Street", "Pine Road", "Cedar Lane",
           "Mill Road", "Park Avenue", "Church Street", "High Street", "Bridge Street",
           "Harbor Road", "Station Road", "King Street", "Queen Street", "Union Avenue",
           "Lincoln Avenue", "Grove Street", "Spring Street", "Water Street"]
ILLNESSES = ["the flu", "chickenpox", "pneumonia", "strep throat", "COVID", "bronchitis",
             "shingles", "mononucleosis", "food poisoning", "a bad cold", "tonsillitis"]

JOBS = ["a data analyst", "a graphic designer", "a civil engineer", "a pharmacist", "an architect",
        "a paralegal", "a dentist", "an electrician", "a marketing manager", "a UX researcher",
        "a veterinarian", "a chef", "a journalist", "a librarian", "a pilot", "a sales director",
        "an HR specialist", "a mechanical engineer", "a product designer", "a copywriter",
        "a financial analyst", "a dental hygienist", "a lab technician", "a software tester",
        "a translator", "a social worker", "an event planner", "a bookkeeper",
        "a florist", "an urban planner", "a radiologist", "a data engineer",
        "a frontend developer", "a DevOps engineer", "a security analyst", "a mobile developer",
        "a QA engineer", "a technical writer", "a recruiter", "an insurance broker",
        "a mechanic", "a landscape architect", "an interior designer", "an economist",
        "a statistician", "a paramedic", "an air traffic controller", "a park ranger",
        "a video editor", "a police officer"]
EMPLOYERS = ["Northwind Labs", "Bluefin Analytics", "Copperline Health", "Meridian Bank",
             "Tallgrass Energy", "Vantage Robotics", "Brightwater Media", "Kestrel Aerospace",
             "Evergreen Insurance", "Summit Pharma", "Halcyon Games", "Pinecrest Hospital",
             "Ironbridge Consulting", "Lumen Retail", "Granite Systems", "Oakridge University",
             "Silverline Telecom", "Harborview Capital", "Quillsoft", "Beacon Biotech",
             "Redwood Legal", "Nimbus Cloud", "Fjord Software", "Cobalt Security",
             "Atlas Construction", "Sunbeam Foods", "Clearwater Utilities", "Parkside Architects",
             "Ridgeway Motors", "Marlowe Publishing", "Orchard Ventures", "Cascade Outdoor",
             "Prairie Mutual", "Lighthouse Studios", "Keystone Manufacturing",
             "Aurora Semiconductors", "Vireo Design", "Polaris Automotive", "Bramble and Co",
             "Foxglove Pharmacy", "Tidepool Data", "Larkspur Media", "Basalt Mining",
             "Heron Bay Resorts", "Sable Fintech"]
DEPARTMENTS = ["data", "design", "sales", "finance", "security", "mobile", "payments", "growth",
               "support", "legal", "research", "marketing", "analytics", "operations"]
REPORTS = ["the sales forecast", "a design review", "a product demo", "the hiring update",
           "the budget summary", "a customer feedback report", "the quarterly metrics",
           "a risk review"]
AUDIENCES = ["the leadership team", "their team", "the board", "the client", "the sales team"]
DEGREES = ["a bachelor's in economics", "a master's in statistics", "an MBA", "a PhD in physics",
           "a bachelor's in history", "a master's in design", "a bachelor's in biology",
           "a master's in public policy", "a bachelor's in philosophy"]
UNIVERSITIES = ["Ohio State", "the University of Toronto", "McGill", "Georgia Tech",
                "Rice University", "the University of Leeds", "Trinity College Dublin",
                "TU Munich", "Oakridge University", "the University of Michigan", "Purdue",
                "the University of Edinburgh"]

AIRLINES = ["Delta", "United", "American Airlines", "Air Canada", "British Airways", "KLM",
            "Lufthansa", "Emirates", "Qatar Airways", "Singapore Airlines", "JetBlue",
            "Southwest", "Iberia", "Turkish Airlines", "Qantas", "Air France"]
STATUSES = ["Silver", "Gold", "Diamond", "Sapphire", "Emerald", "Ruby"]
CITY_FEATURES = ["museums", "street food", "architecture", "nightlife", "parks", "markets",
                 "jazz clubs", "bookshops", "beaches", "galleries"]
SOUVENIRS = ["a handmade rug", "a set of ceramic bowls", "a leather journal", "a woven basket",
             "a vintage map", "a carved wooden mask", "a silk scarf", "a copper pot",
             "a framed print", "a wool blanket", "a tin of spices", "a brass lantern"]
CARS = ["Honda Civic", "Toyota Corolla", "Mazda3", "Ford F-150", "Subaru Outback", "Toyota RAV4",
        "Honda CR-V", "Tesla Model 3", "Volkswagen Golf", "Hyundai Kona", "Kia Soul",
        "Jeep Wrangler", "Volvo XC60", "BMW 3 Series", "Audi A4", "Ford Mustang", "Chevy Bolt",
        "Nissan Leaf", "Toyota Prius", "Mini Cooper", "Ford Transit van", "Kia Niro",
        "Mazda CX-5", "Toyota Tacoma"]
COLORS = ["red", "blue", "silver", "white", "black", "gray", "green", "dark blue", "burgundy",
          "yellow"]
COUNTRY_COUNTS = [str(c) for c in range(8, 61)]

INSTRUMENTS = ["piano", "drums", "trumpet", "saxophone", "clarinet", "flute", "trombone",
               "accordion", "harmonica", "oboe", "keyboard", "tuba"]
MUSIC_GROUPS = ["jazz band", "brass band", "rock band", "swing band", "wind ensemble",
                "folk trio", "klezmer band", "marching band", "cover band", "funk band"]
GENRES = ["mystery", "science fiction", "fantasy", "historical", "romance", "horror", "crime",
          "thriller", "dystopian", "detective"]
COLLECTIBLES = ["vintage postcards", "snow globes", "vinyl records", "enamel pins",
                "fridge magnets", "old coins", "stamps", "matchbooks", "antique maps",
                "comic books", "concert posters", "fountain pens", "sneakers", "teapots",
                "film cameras"]
COLLECTION_SIZES = [str(c) for c in range(40, 800, 20)]
OUTDOOR = ["mountain biking", "trail running", "skateboarding", "fishing", "surfing",
           "snowboarding", "cross-country skiing", "horseback riding", "geocaching",
           "disc golf", "road cycling", "orienteering"]
RACES = ["a 10K", "a triathlon", "a century ride", "an obstacle race", "a sprint triathlon",
         "a 5K", "a duathlon", "an open-water swim", "a trail race", "a gran fondo"]
SHOWS = ["The Wire", "Succession", "Friends", "Seinfeld", "Ted Lasso", "The Crown", "Fleabag",
         "Mad Men", "Parks and Recreation", "Better Call Saul", "Twin Peaks", "The Sopranos",
         "Lost", "Severance", "Columbo", "Frasier", "Cheers", "Doctor Who", "Downton Abbey",
         "Top Chef", "The Bear", "Schitt's Creek"]
SKILLS = ["calligraphy", "pottery", "woodcarving", "chess", "juggling", "origami", "film editing",
          "songwriting", "astronomy", "digital illustration", "magic tricks", "stand-up comedy",
          "screen printing", "candle making", "watercolor"]
COURSE_PLATFORMS = ["Coursera", "Udemy", "Skillshare", "MasterClass", "Domestika", "edX",
                    "Khan Academy"]

LANGUAGES = ["Python", "Go", "TypeScript", "Java", "Kotlin", "C#", "Swift", "Ruby", "Elixir",
             "Scala", "Haskell", "Clojure", "PHP", "Julia", "OCaml", "Dart", "F#", "R"]
EDITORS = ["VS Code", "Emacs", "IntelliJ IDEA", "PyCharm", "Zed", "Helix", "Xcode", "Eclipse",
           "GoLand", "RubyMine"]
LAPTOPS = ["ThinkPad X1 Carbon", "Dell XPS 13", "Framework Laptop 13", "Surface Laptop 5",
           "HP Spectre x360", "ThinkPad T14", "Asus Zenbook 14", "Acer Swift 3", "Razer Blade 15",
           "LG Gram 16"]
PHONES = ["Pixel 8", "Pixel 7a", "Galaxy S23", "Galaxy A54", "OnePlus 12", "Nothing Phone 2",
          "Xperia 1 V", "Moto G Power", "Fairphone 5"]
SERVER_HARDWARE = ["an Intel NUC", "a refurbished Dell OptiPlex", "a Raspberry Pi 5",
                   "an old gaming PC", "a fanless mini PC", "a rack-mounted HP ProLiant"]
SERVER_SERVICES = ["Jellyfin", "Plex", "Pi-hole", "Gitea", "a Minecraft server", "Paperless-ngx",
                   "a Mastodon instance", "Miniflux", "Grafana dashboards", "an RSS reader",
                   "a personal wiki"]
TOOL_CHOICES = {
    "note taking": ["Obsidian", "Evernote", "Bear", "Joplin", "Logseq", "OneNote"],
    "spreadsheets": ["Excel", "Google Sheets", "Numbers", "Airtable", "LibreOffice Calc"],
    "web browsing": ["Firefox", "Chrome", "Safari", "Brave", "Arc", "Vivaldi", "Edge"],
    "design work": ["Figma", "Sketch", "Penpot", "Affinity Designer", "Canva"],
    "terminal work": ["iTerm2", "Alacritty", "kitty", "WezTerm", "Warp", "GNOME Terminal"],
    "diagrams": ["Excalidraw", "Visio", "draw.io", "Lucidchart", "Mermaid"],
    "containers": ["Podman", "Docker", "containerd", "LXC"],
    "team chat": ["Slack", "Discord", "Mattermost", "Zulip", "Rocket.Chat"],
}
TOOL_PREFS = [f"{a} over {b} for {task}" for task, tools in TOOL_CHOICES.items()
              for a in tools for b in tools if a != b]
TECH_PERSONS = ["The user", "The user's team", "The user's manager", "The user's coworker",
                "The user's partner", "The user's roommate", "The user's brother", "The user's sister",
                "The user's best friend"]
GADGETS = ["mesh router", "smart TV", "tablet", "printer", "e-reader", "smartwatch",
           "streaming stick", "laptop", "webcam", "game console", "robot vacuum", "soundbar",
           "fitness tracker", "digital photo frame", "video doorbell"]
LIBRARY_KINDS = ["date parsing", "logging", "HTTP client", "CSV", "command-line parsing",
                 "retry", "rate limiting", "templating", "image resizing", "feature flag",
                 "config loading", "test fixture"]
DEVICES = ["tablet is an iPad Air", "tablet is a Galaxy Tab S9", "e-reader is a Kindle Paperwhite",
           "e-reader is a Kobo Libra 2", "smartwatch is a Garmin Forerunner 255",
           "smartwatch is an Apple Watch SE", "camera is a Fujifilm X-T30",
           "camera is a Sony A7 III", "game console is a Nintendo Switch",
           "game console is a PlayStation 5", "drone is a DJI Mini 3",
           "smartwatch is a Fitbit Versa 4"]

SUBSCRIPTIONS = ["Netflix", "Hulu", "Disney+", "YouTube Premium", "Apple Music", "Audible",
                 "the New York Times", "a Peloton membership", "ClassPass", "Xbox Game Pass",
                 "Nintendo Switch Online", "Crunchyroll", "HBO Max", "Patreon", "ChatGPT Plus",
                 "Adobe Creative Cloud", "Strava", "The Economist"]
MONTHLY_AMOUNTS = [f"${a}" for a in (5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 20, 23, 25,
                                     30, 35, 40, 45, 55)]
SAVING_GOALS = ["a new car", "a trip around Japan", "a sabbatical", "a new road bike",
                "a piano", "an emergency fund", "their daughter's braces", "a home gym",
                "a used motorcycle", "a family reunion", "early retirement"]
RENTS = [f"${a:,}" for a in range(900, 3900, 100)]
ORDINALS_OF_MONTH = ["1st", "3rd", "5th", "10th", "15th", "28th"]
BANKS = ["Chase", "Ally", "Capital One", "Wells Fargo", "Schwab", "Monzo", "Revolut", "N26",
         "TD Bank", "Citibank", "BBVA", "ING", "Barclays", "HSBC", "a local credit union"]
CARDS = ["travel rewards", "cash-back", "no-fee", "dining rewards", "grocery rewards"]
INSURERS = ["Geico", "Progressive", "State Farm", "Allstate", "Lemonade", "USAA", "Nationwide",
            "Liberty Mutual", "Farmers", "Travelers"]
YEARLY_AMOUNTS = [f"${a:,}" for a in range(600, 2600, 100)]
INSURED = ["car", "renters", "home", "pet", "travel", "life"]
SAVINGS_ACCOUNTS = ["a high-yield savings account", "a money market account",
                    "a certificate of deposit", "a Roth IRA", "a brokerage account"]
BUDGET_APPS = ["YNAB", "Monarch Money", "Copilot", "a Google Sheets template", "EveryDollar",
               "PocketGuard", "Quicken", "Actual Budget"]

HOMES = ["a two-bedroom apartment", "a studio apartment", "a townhouse", "a duplex",
         "a converted loft", "a bungalow", "a split-level house", "a row house", "a condo",
         "a farmhouse", "a Victorian house", "a ranch house"]
HOODS = ["Old Town", "Midtown", "Eastside", "Hillcrest", "Northgate", "Westwood", "Oak Park",
         "Harbor Point", "Mill District", "Lakeview", "Fairmount", "Highland", "Southside",
         "Brookside", "Elm Heights"]
ROOMS = ["bathroom", "guest bedroom", "attic", "garage", "laundry room", "mudroom", "hallway",
         "dining room", "entryway", "sunroom"]
MATERIALS = ["reclaimed wood", "terracotta tiles", "bamboo flooring", "subway tiles",
             "cork flooring", "hemp insulation", "slate tiles", "exposed brick", "wallpaper",
             "shiplap", "oak trim", "limewash walls"]
APPLIANCES = ["dishwasher is a Bosch", "dishwasher is a Miele", "dishwasher is a Whirlpool",
              "washing machine is an LG", "washing machine is a Samsung",
              "washing machine is a Speed Queen", "fridge is a Samsung", "fridge is an LG",
              "fridge is a Smeg", "fridge is a GE", "vacuum is a Dyson", "vacuum is a Shark",
              "vacuum is a Miele", "air purifier is a Coway", "air purifier is a Levoit",
              "air purifier is a Blueair", "oven is a Bosch", "oven is a Wolf",
              "dryer is an LG", "dryer is a Whirlpool", "stand mixer is a Kenwood",
              "stand mixer is a Breville"]
PLANTS = ["orchids", "succulents", "roses", "ferns", "bonsai trees", "sunflowers", "tulips",
          "lemon trees", "hydrangeas", "cacti", "peace lilies", "geraniums", "marigolds",
          "dahlias", "fig trees", "bougainvillea"]
PLANT_SPOTS = ["balcony", "windowsill", "patio", "front porch", "back deck", "rooftop"]
HOSTED_EVENTS = ["board game night", "a potluck dinner", "movie night", "trivia night",
                 "a poker night", "a barbecue", "karaoke night"]
HOST_PERIODS = ["month", "other Saturday", "quarter", "few weeks"]

BREEDS = ["a golden retriever", "a labrador", "a border collie", "a corgi", "a French bulldog",
          "a poodle", "a shiba inu", "a husky", "a boxer", "a pug", "a Great Dane",
          "an Australian shepherd", "a Bernese mountain dog", "a schnauzer", "a Siamese cat",
          "a ragdoll cat", "a Bengal cat", "a sphynx cat", "a tabby cat", "a tuxedo cat",
          "a Persian cat", "a British shorthair", "a leopard gecko", "a corn snake",
          "a guinea pig", "a hamster", "a lop-eared rabbit", "a ferret", "an axolotl",
          "a tortoise"]
PET_NAMES = ["Rocky", "Luna", "Bella", "Max", "Charlie", "Coco", "Milo", "Daisy", "Ollie",
             "Nacho", "Waffles", "Mochi", "Ziggy", "Bear", "Maple", "Ginger", "Olive", "Toffee",
             "Noodle", "Pickles", "Scout", "Rusty", "Sunny", "Taco", "Willow", "Shadow", "Gizmo",
             "Pumpkin", "Oreo", "Frankie", "Poppy", "Clover", "Jasper", "Loki", "Thor", "Chewie",
             "Bruno", "Rolo", "Pebbles", "Sprout", "Tofu", "Dumpling", "Mango", "Cinnamon", "Blue",
             "Nova", "Pippin", "Marble", "Butters", "Fig"]
DOG_FOODS = ["salmon kibble", "chicken and rice", "raw beef", "freeze-dried lamb",
             "turkey kibble", "venison stew"]
CAT_FOODS = ["wet turkey food", "salmon pate", "chicken kibble", "tuna in broth", "duck pate"]
SMALL_PETS_FOOD = ["rabbit {} eats timothy hay", "rabbit {} eats fresh greens",
                   "guinea pig {} eats timothy hay", "guinea pig {} eats pellets and greens",
                   "tortoise {} eats dandelion greens", "ferret {} eats raw chicken"]
PETS = ["dog", "cat", "puppy", "rabbit", "ferret", "guinea pig", "tortoise"]
VET_PERIODS = ["six months", "year", "three months", "spring"]
PET_ACTIVITIES = ["chasing tennis balls", "swimming in the lake", "chewing sticks",
                  "riding in the car", "sitting on the windowsill", "playing fetch",
                  "chasing laser pointers", "sunbathing on the porch", "rolling in the snow",
                  "stealing socks"]

ACTIVITIES = ["yoga class", "pottery class", "choir practice", "piano lessons", "a swim lesson",
              "a dance class", "volunteer shifts", "chess club", "improv class",
              "a coding bootcamp", "a ceramics workshop", "a salsa class", "a drawing class"]
FOCUS_BLOCKS = ["1 pm to 3 pm", "2 pm to 4 pm", "1:30 pm to 3:30 pm", "3 pm to 5 pm",
                "2 pm to 5 pm"]
FOCUS_KINDS = ["deep work", "writing", "code reviews", "planning", "reading research papers",
               "admin tasks", "design work"]
VOLUNTEER_PLACES = ["the food bank", "the public library", "a literacy program", "a hospice",
                    "the local museum", "a youth soccer league", "a community radio station",
                    "the county fair"]
MONTH_ORDINALS = ["first", "second", "third", "last"]
STORES = ["Trader Joe's", "Aldi", "Costco", "Whole Foods", "Lidl", "Kroger", "Safeway",
          "Wegmans", "Sprouts", "the farmers market"]
KID_ACTIVITIES = ["swim practice", "piano lessons", "scouts", "ballet", "chess club",
                  "art class", "soccer practice", "coding club", "drum lessons"]

DOCS = ["status updates", "design docs", "weekly reports", "trip itineraries", "recipes",
        "shopping lists", "code reviews", "release notes", "project plans", "cover letters"]
FORMATS = ["Markdown", "a table", "numbered lists", "British English", "AP style",
           "sentence case", "plain English", "the second person"]
DIGESTS = ["a news digest", "a weekly planning summary", "market updates", "a weather forecast",
           "a reading list", "a budget report", "sports scores"]
DOC_STYLES = ["headings", "dates in ISO format", "24-hour times", "page numbers", "citations",
              "a glossary", "a table of contents"]
DIGEST_CHANNELS = ["Slack", "push notification", "Telegram", "RSS", "their smartwatch"]
TONE_CONTEXTS = ["work chats", "customer replies", "cover letters", "social posts", "slide decks",
                 "code review comments", "family group chats"]
DRIVES = ["Google Drive", "SharePoint", "Box", "OneDrive"]
FOLDERS = ["Team", "Archive", "Drafts", "Clients", "Finance", "Personal", "Shared"]
REMINDER_CHANNELS = ["push", "Slack", "desktop", "smartwatch"]
TONES = ["formal", "casual", "friendly", "warm", "neutral", "playful"]
DISLIKES = ["emojis", "exclamation marks", "jargon", "sarcasm", "corporate buzzwords",
            "rhetorical questions", "hedging"]
TOOL_PURPOSES = ["Trello for household chores", "Asana for client work",
                 "Apple Reminders for errands", "Slack for team chat",
                 "Grammarly for proofreading", "Pocket for saved articles",
                 "Readwise for highlights", "Miro for workshops", "Loom for async updates",
                 "Things 3 for personal tasks", "Raindrop for bookmarks",
                 "Google Keep for quick lists"]
REMINDER_LEADS = ["a day", "an hour", "two days", "thirty minutes", "a week"]
REMINDER_EVENTS = ["dentist visit", "flight", "birthday", "deadline", "school event",
                   "car service", "vet visit", "concert"]

# (topic, template, {slot: values}). Every slot in the template text must be listed.
TEMPLATES: list[tuple[str, str, dict[str, list[str]]]] = [
    # diet
    ("diet", "{person} is allergic to {allergen}.", {"person": PERSONS, "allergen": ALLERGENS}),
    ("diet", "{person} follows a {diet} diet for {reason}.",
     {"person": PERSONS, "diet": DIETS, "reason": DIET_REASONS}),
    ("diet", "The user's favorite {cuisine} restaurant is {restaurant} in {city}.",
     {"cuisine": CUISINES, "restaurant": RESTAURANTS, "city": CITIES}),
    ("diet", "{person} can't stand the taste of {food}.",
     {"person": PERSONS, "food": DISLIKED_FOODS}),
    ("diet", "The user usually orders {dish} when eating out with their {relname}.",
     {"dish": DISHES, "relname": rel_names(REL_KIN)}),
    ("diet", "{person} drinks {drink} with {meal} most days.",
     {"person": PERSONS, "drink": DRINKS, "meal": MEALS}),
    ("diet", "The user's {relname} makes the best {dish} in the family.",
     {"relname": rel_names(REL_ALL), "dish": DISHES}),
    # health
    ("health", "{person} takes {medcond}.", {"person": PERSONS, "medcond": MED_CONDITIONS}),
    ("health", "The user has {appt} appointment with Dr. {surname} on {day} at {time}.",
     {"appt": APPOINTMENTS, "surname": SURNAMES, "day": WORKDAYS, "time": TIMES}),
    ("health", "The user {exercise} for {minutes} minutes every {day} {part}.",
     {"exercise": EXERCISES, "minutes": MINUTES, "day": WEEKDAYS, "part": DAYPARTS}),
    ("health", "The user gets a flu shot every {month} at the {pharmacy} on {street}.",
     {"month": MONTHS, "pharmacy": PHARMACIES, "street": STREETS}),
    ("health", "The user's {relname} had {illness} in {month} {year}.",
     {"relname": rel_names(REL_ALL), "illness": ILLNESSES, "month": MONTHS, "year": PAST_YEARS}),
    # family
    ("family", "The user's {relname} lives in {city}.",
     {"relname": rel_names(REL_KIN), "city": CITIES}),
    ("family", "The user's {relname} works as {job} in {city}.",
     {"relname": rel_names(REL_KIN), "job": JOBS, "city": CITIES}),
    ("family", "The user's {relname} celebrates a birthday on {month} {date}.",
     {"relname": rel_names(REL_ALL), "month": MONTHS, "date": [str(d) for d in range(1, 29)]}),
    ("family", "The user's {relname} {sport} on {day}s.",
     {"relname": rel_names(CHILDREN), "day": WEEKDAYS,
      "sport": ["plays soccer", "plays basketball", "plays volleyball", "plays lacrosse",
                "plays field hockey", "plays baseball", "plays softball", "plays water polo",
                "plays badminton", "fences", "does judo", "does karate", "does gymnastics",
                "plays ice hockey", "plays rugby", "plays table tennis", "swims laps"]}),
    ("family", "The user's {relname} is in {grade} grade and loves {subject}.",
     {"relname": rel_names(CHILDREN),
      "grade": ["second", "third", "fourth", "fifth", "sixth", "seventh", "ninth", "tenth"],
      "subject": ["math", "art", "history", "music", "geography", "reading", "drama", "coding",
                  "robotics", "gym class"]}),
    ("family", "The user's {relname} is visiting from {city} in {month}.",
     {"relname": rel_names(REL_KIN), "city": CITIES, "month": MONTHS}),
    ("family", "The user visits their {relname} every {day} evening.",
     {"relname": rel_names(REL_KIN + ["grandmother"]), "day": WEEKDAYS}),
    # work
    ("work", "The user works as {job} at {employer}.", {"job": JOBS, "employer": EMPLOYERS}),
    ("work", "The user has worked at {employer} since {year}.",
     {"employer": EMPLOYERS, "year": PAST_YEARS}),
    ("work", "The user's manager at {employer} is {name} {surname}.",
     {"employer": EMPLOYERS, "name": NAMES, "surname": SURNAMES}),
    ("work", "The user's team at {employer} ships a release every {day}.",
     {"employer": EMPLOYERS, "day": WORKDAYS}),
    ("work", "The user's coworker {name} {surname} sits on the {dept} team.",
     {"name": NAMES, "surname": SURNAMES, "dept": DEPARTMENTS}),
    ("work", "The user presents {report} to {audience} every {day}.",
     {"report": REPORTS, "audience": AUDIENCES, "day": WORKDAYS}),
    ("work", "The user earned {degree} from {university} in {year}.",
     {"degree": DEGREES, "university": UNIVERSITIES, "year": PAST_YEARS}),
    # travel
    ("travel", "The user visited {city} in {month} {year} with their {rel}.",
     {"city": CITIES, "month": MONTHS, "year": PAST_YEARS, "rel": REL_ALL}),
    ("travel", "The user has {status} status with {airline}.",
     {"status": STATUSES, "airline": AIRLINES}),
    ("travel", "The user's favorite city to visit is {city} for its {feature}.",
     {"city": CITIES, "feature": CITY_FEATURES}),
    ("travel", "The user brought back {souvenir} from {city} last {season}.",
     {"souvenir": SOUVENIRS, "city": CITIES, "season": SEASONS}),
    ("travel", "The user prefers the train between {pair}.",
     {"pair": [f"{a} and {b}" for a in EUROPE_RAIL for b in EUROPE_RAIL if a < b]}),
    ("travel", "The user has been to {count} countries and liked {city} best.",
     {"count": COUNTRY_COUNTS, "city": CITIES}),
    ("travel", "The user drives a {color} {year} {car}.",
     {"color": COLORS, "year": PAST_YEARS, "car": CARS}),
    # hobbies
    ("hobbies", "The user plays {instrument} in a {group} on {day} evenings.",
     {"instrument": INSTRUMENTS, "group": MUSIC_GROUPS, "day": WEEKDAYS}),
    ("hobbies", "The user is reading a {genre} novel by {name} {surname}.",
     {"genre": GENRES, "name": NAMES, "surname": SURNAMES}),
    ("hobbies", "The user collects {collectible} and owns more than {count} of them.",
     {"collectible": COLLECTIBLES, "count": COLLECTION_SIZES}),
    ("hobbies", "The user goes {activity} near {city} most weekends.",
     {"activity": OUTDOOR, "city": CITIES}),
    ("hobbies", "The user is training for {race} in {city} this {season}.",
     {"race": RACES, "city": CITIES, "season": SEASONS}),
    ("hobbies", "The user's favorite TV show is {show}, which they rewatch with their {rel}.",
     {"show": SHOWS, "rel": REL_ALL}),
    ("hobbies", "The user is learning {skill} through an online course on {platform}.",
     {"skill": SKILLS, "platform": COURSE_PLATFORMS}),
    ("hobbies", "The user took up {skill} in {year} and practices every {day}.",
     {"skill": SKILLS, "year": PAST_YEARS, "day": WEEKDAYS}),
    # tech
    ("tech", "The user writes most of their code in {language} using {editor}.",
     {"language": LANGUAGES, "editor": EDITORS}),
    ("tech", "The user has written {language} in {editor} at {employer} since {year}.",
     {"language": LANGUAGES, "editor": EDITORS, "employer": EMPLOYERS, "year": PAST_YEARS}),
    ("tech", "{person} uses a {laptop} for work and a {phone} personally.",
     {"person": TECH_PERSONS, "laptop": LAPTOPS, "phone": PHONES}),
    ("tech", "The user's home server has been {hardware} running {service} since {year}.",
     {"hardware": SERVER_HARDWARE, "service": SERVER_SERVICES, "year": RECENT_YEARS}),
    ("tech", "{person} prefers {choice}.", {"person": TECH_PERSONS, "choice": TOOL_PREFS}),
    ("tech", "The user's {device}, bought in {month} {year}.",
     {"device": DEVICES, "month": MONTHS, "year": RECENT_YEARS}),
    ("tech", "The user helped their {relname} set up a new {gadget} last {season}.",
     {"relname": rel_names(REL_ALL), "gadget": GADGETS, "season": SEASONS}),
    ("tech", "The user upgraded to a {phone} in {month} {year}.",
     {"phone": PHONES, "month": MONTHS, "year": RECENT_YEARS}),
    ("tech", "The user maintains an open-source {kind} library written in {language}.",
     {"kind": LIBRARY_KINDS, "language": LANGUAGES}),
    # finance
    ("finance", "The user has paid {amount} a month for {subscription} since {year}.",
     {"amount": MONTHLY_AMOUNTS, "subscription": SUBSCRIPTIONS, "year": RECENT_YEARS}),
    ("finance", "{person} is saving for {goal} by {month} {year}.",
     {"person": PERSONS, "goal": SAVING_GOALS, "month": MONTHS, "year": FUTURE_YEARS}),
    ("finance", "The user's {relname} is saving for {goal} by {year}.",
     {"relname": rel_names(REL_KIN), "goal": SAVING_GOALS, "year": FUTURE_YEARS}),
    ("finance", "The user pays {rent} a month for {home} in {city}.",
     {"rent": RENTS, "home": HOMES, "city": CITIES}),
    ("finance", "The user keeps {amount} in {account} at {bank}.",
     {"amount": YEARLY_AMOUNTS, "account": SAVINGS_ACCOUNTS, "bank": BANKS}),
    ("finance", "The user's rent of {rent} is due on the {ordinal} of each month.",
     {"rent": RENTS, "ordinal": ORDINALS_OF_MONTH}),
    ("finance", "The user has banked with {bank} since {year} and uses a {card} credit card.",
     {"bank": BANKS, "year": PAST_YEARS, "card": CARDS}),
    ("finance", "The user's {insured} insurance is with {insurer} and costs {amount} a year.",
     {"insured": INSURED, "insurer": INSURERS, "amount": YEARLY_AMOUNTS}),
    ("finance", "The user uses {app} to budget and reviews spending every {day} {part}.",
     {"app": BUDGET_APPS, "day": WEEKDAYS, "part": DAYPARTS}),
    # home
    ("home", "The user lives in {home} in the {hood} neighborhood of {city}.",
     {"home": HOMES, "hood": HOODS, "city": CITIES}),
    ("home", "The user is renovating the {room} with {material}.",
     {"room": ROOMS, "material": MATERIALS}),
    ("home", "The user's {appliance} model bought in {year}.",
     {"appliance": APPLIANCES, "year": PAST_YEARS}),
    ("home", "The user grows {plant} on the {spot}.", {"plant": PLANTS, "spot": PLANT_SPOTS}),
    ("home", "The user hosts {event} at their place every {period}.",
     {"event": HOSTED_EVENTS, "period": HOST_PERIODS}),
    ("home", "The user's {relname} looks after their {plant} when they travel.",
     {"relname": rel_names(REL_KIN), "plant": PLANTS}),
    # pets
    ("pets", "The user has {breed} named {pet_name}.", {"breed": BREEDS, "pet_name": PET_NAMES}),
    ("pets", "The user's dog {pet_name} eats {food} twice a day.",
     {"pet_name": PET_NAMES, "food": DOG_FOODS}),
    ("pets", "The user's cat {pet_name} eats {food} twice a day.",
     {"pet_name": PET_NAMES, "food": CAT_FOODS}),
    ("pets", "The user's {pet_food} every morning.",
     {"pet_food": [f.format(n) for f in SMALL_PETS_FOOD for n in PET_NAMES]}),
    ("pets", "The user takes their {pet} {pet_name} to the vet every {period}.",
     {"pet": PETS, "pet_name": PET_NAMES, "period": VET_PERIODS}),
    ("pets", "The user's {pet} {pet_name} loves {activity}.",
     {"pet": ["dog", "cat", "puppy"], "pet_name": PET_NAMES, "activity": PET_ACTIVITIES}),
    ("pets", "The user's {relname} is pet-sitting their {pet} {pet_name} this {season}.",
     {"relname": rel_names(REL_KIN), "pet": PETS, "pet_name": PET_NAMES, "season": SEASONS}),
    # schedule
    ("schedule", "The user has {activity} every {day} at {time}.",
     {"activity": ACTIVITIES, "day": WEEKDAYS, "time": TIMES}),
    ("schedule", "The user blocks {block} on {day}s for {focus}.",
     {"block": FOCUS_BLOCKS, "day": WORKDAYS, "focus": FOCUS_KINDS}),
    ("schedule", "The user volunteers at {place} on the {ordinal} {day} of each month.",
     {"place": VOLUNTEER_PLACES, "ordinal": MONTH_ORDINALS, "day": WEEKDAYS}),
    ("schedule", "The user does the grocery shopping every {day} {part} at {store}.",
     {"day": WEEKDAYS, "part": DAYPARTS, "store": STORES}),
    ("schedule", "The user's {relname} has {activity} every {day} at {time}.",
     {"relname": rel_names(CHILDREN), "activity": KID_ACTIVITIES, "day": WEEKDAYS,
      "time": TIMES}),
    # preferences in tools and communication
    ("prefs", "The user wants {doc} written in {format}.", {"doc": DOCS, "format": FORMATS}),
    ("prefs", "The user wants {doc} written in {format} with {style}.",
     {"doc": DOCS, "format": FORMATS, "style": DOC_STYLES}),
    ("prefs", "The user likes to receive {digest} by {channel} on {day} {part}s.",
     {"digest": DIGESTS, "channel": DIGEST_CHANNELS, "day": WEEKDAYS, "part": DAYPARTS}),
    ("prefs", "The user prefers a {tone} tone in {context} and dislikes {dislike}.",
     {"tone": TONES, "context": TONE_CONTEXTS, "dislike": DISLIKES}),
    ("prefs", "The user's {relname} prefers {tone} messages without {dislike}.",
     {"relname": rel_names(REL_ALL), "tone": TONES, "dislike": DISLIKES}),
    ("prefs", "The user has used {tool} since {year}.", {"tool": TOOL_PURPOSES, "year": RECENT_YEARS}),
    ("prefs", "The user wants {channel} reminders {lead} before every {event}.",
     {"channel": REMINDER_CHANNELS, "lead": REMINDER_LEADS, "event": REMINDER_EVENTS}),
    ("prefs", "The user wants {doc} saved in the {folder} folder on {drive}.",
     {"doc": DOCS, "folder": FOLDERS, "drive": DRIVES}),
    ("prefs", "The user likes {name} {surname} to review their {doc} before they go out.",
     {"name": NAMES, "surname": SURNAMES, "doc": [d for d in DOCS if d != "code reviews"]}),
]

# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------

_SLOT = re.compile(r"\{(\w+)\}")


class _Template:
    """One template with its vocabularies already cleared of excluded phrases."""

    def __init__(self, topic: str, text: str, slots: dict[str, list[str]], excl: Exclusions):
        names = _SLOT.findall(text)
        if sorted(set(names)) != sorted(slots):
            raise ValueError(f"template slots do not match their vocabularies: {text!r}")
        self.topic = topic
        self.text = text
        self.names = names
        # Deduplicated in order (never via set iteration, whose order varies between runs).
        self.values = [[v for v in dict.fromkeys(slots[n]) if excl.match(v) is None] for n in names]
        self.dropped = sum(len(dict.fromkeys(slots[n])) for n in names) - sum(
            len(v) for v in self.values)
        self.capacity = 1
        for vals in self.values:
            self.capacity *= len(vals)
        # str.format on positional fields is the fastest renderer for the hot loop.
        counter = iter(range(len(names)))
        self._fmt = _SLOT.sub(lambda _m: "{" + str(next(counter)) + "}", text)

    def render(self, index: int) -> str:
        parts = []
        for vals in reversed(self.values):
            index, r = divmod(index, len(vals))
            parts.append(vals[r])
        parts.reverse()
        return self._fmt.format(*parts)


def _build_templates(excl: Exclusions) -> list[_Template]:
    return [_Template(topic, text, slots, excl) for topic, text, slots in TEMPLATES]


def _quotas(caps: list[int], total: int) -> list[int]:
    """Even shares of `total`, each capped by its template's capacity; the rest goes to the others."""
    quotas = [0] * len(caps)
    remaining = total
    order = sorted(range(len(caps)), key=lambda i: caps[i])
    for k, i in enumerate(order):
        left = len(order) - k
        quotas[i] = min(caps[i], -(-remaining // left))
        remaining -= quotas[i]
    return quotas


def capacity(items: list[dict] | None = None) -> int:
    """Upper bound on distinct distractors (product of the cleared vocabularies per template)."""
    items = load_items() if items is None else items
    return sum(t.capacity for t in _build_templates(Exclusions(items)))


def _topic_quotas(templates: list[_Template], total: int) -> list[int]:
    """Even shares per topic, then even shares per template within each topic."""
    topics = list(dict.fromkeys(t.topic for t in templates))
    members = {tp: [i for i, t in enumerate(templates) if t.topic == tp] for tp in topics}
    per_topic = _quotas([sum(templates[i].capacity for i in members[tp]) for tp in topics], total)
    quotas = [0] * len(templates)
    for tp, share in zip(topics, per_topic):
        for i, q in zip(members[tp], _quotas([templates[i].capacity for i in members[tp]], share)):
            quotas[i] = q
    return quotas


def distractors(count: int, seed: int = 7, items: list[dict] | None = None) -> list[str]:
    """`count` distinct distractor sentences, none containing an excluded phrase or a fact."""
    return _generate(count, seed, load_items() if items is None else items)[0]


def _generate(count: int, seed: int, items: list[dict]) -> tuple[list[str], list[str]]:
    """The distractors and, in parallel, the topic of the template each came from."""
    excl = Exclusions(items)
    templates = _build_templates(excl)
    total_cap = sum(t.capacity for t in templates)
    if count > total_cap:
        raise ValueError(f"asked for {count} distractors but the templates yield at most {total_cap}")
    rng = random.Random(seed)
    seen = {item["fact"] for item in items}
    out: list[str] = []
    topics: list[str] = []
    used = [0] * len(templates)

    def accept(text: str, topic: str) -> bool:
        if text in seen or excl.match(text) is not None:
            return False
        seen.add(text)
        out.append(text)
        topics.append(topic)
        return True

    quotas = _topic_quotas(templates, count)
    for ti, (t, q) in enumerate(zip(templates, quotas)):
        if q == 0:
            continue
        # A little over the quota, since a few renders may be rejected.
        picks = rng.sample(range(t.capacity), min(t.capacity, q + q // 8 + 8))
        for index in picks:
            if used[ti] == q:
                break
            if accept(t.render(index), t.topic):
                used[ti] += 1
    # Top up what rejections left short from the templates with room to spare.
    deficit = count - len(out)
    roomy = [ti for ti, t in enumerate(templates) if t.capacity > 4 * max(used[ti], 1)]
    attempts = 0
    while deficit > 0:
        attempts += 1
        if attempts > 100 * count + 1000 or not roomy:
            raise ValueError(f"could only build {len(out)} of {count} distinct distractors")
        ti = roomy[rng.randrange(len(roomy))]
        if accept(templates[ti].render(rng.randrange(templates[ti].capacity)), templates[ti].topic):
            used[ti] += 1
            deficit -= 1
    return out, topics


def records(n: int, seed: int = 7) -> list[dict]:
    """Exactly `n` records `{"content", "namespace"}`: every labelled fact once plus distractors.

    Deterministic for a given `n` and `seed`; facts and distractors alike are shuffled and placed
    on random users among `USERS`.
    """
    return _records(n, seed, load_items())[0]


def _records(n: int, seed: int, items: list[dict]) -> tuple[list[dict], dict[str, str]]:
    """The records and the topic of every distractor (for --stats)."""
    facts = [item["fact"] for item in items]
    if n < len(facts):
        raise ValueError(f"n must be at least the number of labelled facts ({len(facts)})")
    texts, topics = _generate(n - len(facts), seed, items)
    contents = facts + texts
    rng = random.Random(seed ^ 0x5EED)
    rng.shuffle(contents)
    recs = [{"content": c, "namespace": f"/users/user-{rng.randrange(USERS):04d}/facts"}
            for c in contents]
    return recs, dict(zip(texts, topics))


def qrels(recs: list[dict], items: list[dict] | None = None) -> list[dict]:
    """For each labelled query: query, kind, fact, and the index and namespace of its record."""
    items = load_items() if items is None else items
    where = {r["content"]: i for i, r in enumerate(recs)}
    out = []
    for item in items:
        i = where.get(item["fact"])
        if i is None:
            raise ValueError(f"fact missing from records: {item['fact']!r}")
        out.append({"query": item["query"], "kind": item["kind"], "fact": item["fact"],
                    "index": i, "namespace": recs[i]["namespace"]})
    return out


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------

STOPWORDS = set("""a about after all also always an and any are as at away be been before being
between but by can can't could did do does doing don't each even every for from get gets go goes
had has have having he her here him his how i if in into is it its it's just like many me more
most much my never no not now of off on one only or other our out over own per rather really
right s same she should since so some still such than that the their them then there these they
this those through to too under until up us very was we were what what's when where whether which
while who whom whose why will with without would you your user user's users their's theirs""".split())


def _stem(word: str) -> str:
    """A crude Porter-like stem, enough to catch 'drives'/'driving' or 'grows'/'growing'."""
    for suffix in ("ingly", "edly", "ing", "ies", "ied", "es", "ed", "ly", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if suffix in ("ies", "ied"):
                word += "y"
            break
    if word.endswith("e") and len(word) > 4:
        word = word[:-1]
    return word


def content_stems(text: str) -> set[str]:
    """Stems of the words of `text` that carry meaning (stop words and 'user' dropped)."""
    words = re.findall(r"[a-z0-9]+(?:'[a-z]+)?", normalise(text))
    return {_stem(w.split("'")[0]) for w in words if w not in STOPWORDS}


def check_items(items: list[dict], excl: Exclusions) -> list[str]:
    """Problems with the labelled set (empty when it is sound)."""
    problems = []
    facts = [i["fact"] for i in items]
    queries = [i["query"] for i in items]
    for label, values in (("fact", facts), ("query", queries)):
        dup = {v for v in values if values.count(v) > 1}
        if dup:
            problems.append(f"duplicate {label}s: {sorted(dup)}")
    for idx, item in enumerate(items):
        fact, query = item["fact"], item["query"]
        if not query.strip():
            problems.append(f"item {idx}: empty query")
        words = len(fact.split())
        if not WORDS_MIN <= words <= WORDS_MAX:
            problems.append(f"item {idx}: fact has {words} words: {fact!r}")
        if not item.get("exclude"):
            problems.append(f"item {idx}: no exclude list: {fact!r}")
        elif not excl.matches_for_item(fact, idx):
            problems.append(f"item {idx}: no exclude phrase occurs in its own fact: {fact!r}")
        shared = content_stems(fact) & content_stems(query)
        if item["kind"] == "paraphrase" and shared:
            problems.append(f"item {idx}: paraphrase query shares {sorted(shared)}: {query!r}")
        if item["kind"] == "keyword" and not shared:
            problems.append(f"item {idx}: keyword query shares no word with its fact: {query!r}")
        # Another target containing one of this query's excluded phrases could answer it too.
        for other, other_item in enumerate(items):
            if other != idx:
                hit = excl.matches_for_item(other_item["fact"], idx)
                if hit:
                    problems.append(f"fact {other} contains {hit} excluded for query {idx} "
                                    f"({query!r}): {other_item['fact']!r}")
    return problems


def check_records(recs: list[dict], items: list[dict], seed: int = 7) -> list[str]:
    """Problems with a generated corpus (empty when it is sound)."""
    problems = []
    excl = Exclusions(items)
    facts = {i["fact"] for i in items}
    contents = [r["content"] for r in recs]
    if len(set(contents)) != len(contents):
        problems.append(f"{len(contents) - len(set(contents))} duplicate records")
    counts: dict[str, int] = {}
    for c in contents:
        if c in facts:
            counts[c] = counts.get(c, 0) + 1
    for f in sorted(facts):
        if counts.get(f, 0) != 1:
            problems.append(f"fact present {counts.get(f, 0)} times: {f!r}")
    distractor_texts = [c for c in contents if c not in facts]
    bad = 0
    for c in distractor_texts:
        hit = excl.match(c)
        if hit is not None:
            bad += 1
            if bad <= 10:
                problems.append(f"distractor contains {hit[0]!r} excluded for query "
                                f"{items[hit[1]]['query']!r}: {c!r}")
    if bad > 10:
        problems.append(f"... {bad} distractors with excluded phrases in all")
    # The anchor index must never miss: compare with trying every phrase on a sample.
    rng = random.Random(seed)
    sample = rng.sample(distractor_texts, min(3000, len(distractor_texts)))
    for c in sample:
        if (excl.match_slow(c) is None) != (excl.match(c) is None):
            problems.append(f"indexed and exhaustive exclusion matchers disagree on {c!r}")
            break
    for r in recs:
        words = len(r["content"].split())
        if not WORDS_MIN <= words <= WORDS_MAX:
            problems.append(f"record has {words} words: {r['content']!r}")
            break
        if not re.fullmatch(r"/users/user-\d{4}/facts", r["namespace"]):
            problems.append(f"bad namespace {r['namespace']!r}")
            break
    return problems


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _print_stats(recs: list[dict], topic_of: dict[str, str], items: list[dict],
                 elapsed: float) -> None:
    facts = {i["fact"] for i in items}
    contents = [r["content"] for r in recs]
    excl = Exclusions(items)
    templates = _build_templates(excl)
    kinds: dict[str, int] = {}
    for i in items:
        kinds[i["kind"]] = kinds.get(i["kind"], 0) + 1
    by_topic = {t.topic: 0 for t in templates}
    for topic in topic_of.values():
        by_topic[topic] += 1
    namespaces = {r["namespace"] for r in recs}
    print(f"records:            {len(recs)}")
    print(f"unique contents:    {len(set(contents))}")
    print(f"labelled facts:     {sum(1 for c in contents if c in facts)} of {len(items)} "
          f"({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))} queries)")
    print(f"distractors:        {len(contents) - sum(1 for c in contents if c in facts)}")
    print(f"namespaces used:    {len(namespaces)} of {USERS}")
    print(f"avg length:         {sum(map(len, contents)) / len(contents):.1f} chars, "
          f"{sum(len(c.split()) for c in contents) / len(contents):.1f} words")
    print(f"templates:          {len(templates)}; distinct distractors possible: "
          f"{sum(t.capacity for t in templates):,}")
    print(f"exclude phrases:    {len(excl.phrases)}; vocabulary values dropped by them: "
          f"{sum(t.dropped for t in templates)}")
    print("distractors/topic:  " + ", ".join(f"{k} {v}" for k, v in by_topic.items()))
    print(f"generated in:       {elapsed:.2f} s")


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=100_000, help="number of records (default 100000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--stats", action="store_true", help="print counts, lengths and timing")
    parser.add_argument("--check", action="store_true", help="verify the labelled set and corpus")
    parser.add_argument("--jsonl", type=Path, help="write the records to this file, one a line")
    args = parser.parse_args(list(argv) if argv is not None else None)

    try:
        items = load_items()
        start = time.perf_counter()
        recs, topic_of = _records(args.n, args.seed, items)
        elapsed = time.perf_counter() - start
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    if args.jsonl:
        with open(args.jsonl, "w", encoding="utf-8") as f:
            for r in recs:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    if args.stats or not (args.check or args.jsonl):
        _print_stats(recs, topic_of, items, elapsed)
    if args.check:
        problems = check_items(items, Exclusions(items)) + check_records(recs, items, args.seed)
        again = records(args.n, args.seed)
        if again != recs:
            problems.append("two runs with the same n and seed differ")
        for p in problems:
            print(f"FAIL {p}")
        if problems:
            print(f"check failed: {len(problems)} problem(s)")
            return 1
        print(f"check passed: {len(items)} labelled items, {len(recs)} records, "
              f"{sum(len(i.get('exclude', [])) for i in items)} exclude phrases, deterministic")
    return 0


if __name__ == "__main__":
    sys.exit(main())
