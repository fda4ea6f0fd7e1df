"""A generated, fictional QA world: a corpus and questions that no model can answer from memory.

Why: real QA data (NQ, SQuAD) is partly memorised by pretrained readers, so a reader can answer
without the retrieved passage and its attention then says little about which passage mattered.
Here every name, place and organisation is invented from syllables by a seeded RNG, so the answer
has to be read off the passage, and every question has exactly one gold passage that we know.

Design, chosen so that retrieval is hard for a zero-shot retriever but learnable:

* Entities (people, towns, organisations) each get 5 short passages (20-40 words), one per aspect
  (origin, career, education, ...). All passages of an entity carry its name, so a question about
  the entity matches all of them; which one holds the fact is decided by the relation.
* Passages of other entities mention the entity (mentors, founders, mayors, side remarks), and
  filler sentences refer to other entities, so answer strings also occur outside the gold passage,
  in passages of *other* entities (this is deliberate: answer recall is then a looser, easier
  metric than gold recall). Within the asked entity, the answer appears only in the gold passage.
* Fact sentences come in several wordings (one close to the questions, others not: "the parish
  book of X records the baptism of ..."), and most passages also carry a *decoy* sentence that
  borrows the vocabulary of another of the entity's aspects without stating a fact ("Historians
  dispute where and when she was born."), so topical words alone point to the wrong passage.
* Questions are paraphrased with several templates per relation; many use words that are not in
  the fact passage ("hometown" for "was born in", "pass away" for "died"). Train, dev and test ask
  about disjoint sets of entities but use the same relations and templates, so a retriever can
  learn the question-wording -> passage-wording mapping on train and use it on test.
* Answers are short: a place, a year, an organisation, a person, a colour, a trade, ...

Calibration (``benchmarks/calibrate_synth.py``; all-MiniLM-L6-v2, mean pooling, dot product,
``title | text``) on the default size's test split, seeds 0-2: gold recall@1 about 0.5, @5 about
0.98, @10 >= 0.99; one epoch of fine-tuning on train questions lifts recall@1 far above that,
so the difficulty is learnable rather than noise.

Everything is deterministic in ``seed``: lists are built in a fixed order, no set or dict iteration
depends on hashing, and files are written sorted, so the same seed gives byte-identical files.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from attnrag.data.formats import SPLITS, write_passages, write_qa
from attnrag.data.records import Passage, QAExample
from attnrag.io import write_json

GENERATOR_VERSION = 1


@dataclass(frozen=True)
class SizeSpec:
    """How many entities of each kind and how many questions per split."""

    people: int
    towns: int
    orgs: int
    train: int
    dev: int
    test: int
    #: Questions asked per entity (on different passages where possible): spreading a split's
    #: questions over many entities keeps its recall from hinging on a few names.
    per_entity: int


SIZES: dict[str, SizeSpec] = {
    "small": SizeSpec(people=44, towns=8, orgs=8, train=200, dev=50, test=50, per_entity=5),
    "default": SizeSpec(people=520, towns=70, orgs=70, train=2000, dev=300, test=300, per_entity=4),
}

PASSAGES_PER_ENTITY = 5
#: Passage length in words. Short passages keep the reader's prompt small (10 passages of about
#: 40 SmolLM2 tokens each), which is what makes CPU training runs feasible.
MIN_WORDS, MAX_WORDS = 20, 40
TARGET_WORDS = (20, 25)
#: Cap on the approximate SmolLM2 token count of title + text; invented names and years cost 3-5
#: tokens each, so a word budget alone lets name-heavy passages run long.
MAX_APPROX_TOKENS = 52
#: A filler is not added if it would take the passage this far past its target length.
MAX_OVERSHOOT = 5


@dataclass
class World:
    """A generated corpus with its three question splits (see :func:`generate_world`)."""

    passages: list[Passage]
    train: list[QAExample]
    dev: list[QAExample]
    test: list[QAExample]
    seed: int = 0
    size: str = "default"
    #: question id -> relation name (e.g. ``"person.birth_town"``), for per-relation analysis.
    relations: dict[str, str] = field(default_factory=dict)

    def splits(self) -> dict[str, list[QAExample]]:
        return {"train": self.train, "dev": self.dev, "test": self.test}


# --------------------------------------------------------------------------------------------------
# Vocabulary. English words only for things that carry no world knowledge (trades, colours, ...).

# Syllables for invented names: simple, pronounceable, about three SmolLM2 tokens per word.
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr",
           "kr", "th", "st", "sh", "h", "j", "c", "w")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "i", "o", "u", "ai", "ou", "ia")
_CODAS = ("", "", "", "", "", "", "n", "r", "l", "s", "m", "th", "nd", "rn")

OCCUPATIONS = (
    "cartographer", "glassblower", "clockmaker", "weaver", "stonemason", "bookbinder", "apothecary",
    "surveyor", "shipwright", "beekeeper", "tanner", "potter", "engraver", "brewer", "luthier",
    "chandler", "cooper", "fletcher", "saddler", "miller", "locksmith", "dyer", "tailor", "jeweller",
    "printer", "baker", "carpenter", "blacksmith", "ferryman", "herbalist", "astronomer", "archivist",
    "translator", "physician", "notary", "architect", "composer", "painter", "sculptor", "midwife",
)
SUBJECTS = (
    "astronomy", "botany", "geometry", "rhetoric", "chemistry", "anatomy", "navigation", "metallurgy",
    "calligraphy", "law", "philosophy", "hydraulics", "geology", "zoology", "medicine", "optics",
    "algebra", "theology", "agronomy", "mineralogy", "acoustics", "logic", "cryptography", "surgery",
)
COLOURS = (
    "crimson", "teal", "ochre", "violet", "indigo", "scarlet", "emerald", "saffron", "cobalt",
    "maroon", "turquoise", "lilac", "olive", "charcoal", "magenta", "mauve", "vermilion", "beige",
)
INSTRUMENTS = (
    "lute", "harp", "cello", "oboe", "viola", "zither", "dulcimer", "flute", "bassoon", "clarinet",
    "harpsichord", "mandolin", "fiddle", "bagpipes", "trumpet", "accordion", "sitar", "tuba",
)
ANIMALS = (
    "heron", "fox", "hound", "raven", "tortoise", "mule", "goat", "owl", "falcon", "hare", "lynx",
    "badger", "pony", "parrot", "cat", "ferret", "stag", "otter", "swan", "wolf", "boar", "crane",
)
TITLE_ADJ = ("Hollow", "Distant", "Quiet", "Broken", "Endless", "Forgotten", "Winter", "Narrow",
             "Wandering", "Sleeping", "Hidden", "Burning", "Patient", "Crooked", "Last", "Seventh",
             "Northern", "Restless", "Open", "Drowned")
TITLE_NOUN = ("Lantern", "Orchard", "Harbour", "Staircase", "Compass", "Meadow", "Bridge", "Mirror",
              "Garden", "Shore", "Road", "Well", "Gate", "Letter", "Clock", "Anchor", "Window",
              "Chapel", "Ledger", "Kettle", "Ferry", "Loom")
PRODUCTS = ("copper", "wool", "glassware", "salt", "cheese", "timber", "silk", "pottery", "honey",
            "rope", "paper", "lace", "tin", "linen", "cider", "leather", "slate", "walnuts",
            "saffron cakes", "barley", "candles", "soap")
ORG_PRODUCTS = ("barges", "clocks", "telescopes", "looms", "bells", "lanterns", "printing presses",
                "carriages", "sundials", "pumps", "maps", "organs", "compasses", "dyes", "ropes",
                "kilns", "windmills", "cranes", "ink", "locks")
ORG_KINDS = ("Guild", "Company", "Institute", "Society", "Foundry", "Works", "Academy", "Trust",
             "Brotherhood", "League")
LANDMARK_KINDS = ("Tower", "Bridge", "Gate", "Hall", "Fountain", "Arch", "Lighthouse", "Chapel")
AWARD_KINDS = ("Medal", "Prize", "Laurel", "Ribbon", "Cup")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
ORDINALS = ("eldest", "second", "third", "fourth", "youngest")


# --------------------------------------------------------------------------------------------------
# Templates. An aspect is one passage; its relations are the facts questions can ask about.
# Placeholders: {n} the entity's name, {he}/{his}/{him}/{He}/{His} its pronouns, other names are
# attribute slots. Question templates deliberately mix close wording and paraphrase.


@dataclass(frozen=True)
class Relation:
    name: str
    slot: str
    questions: tuple[str, ...]


@dataclass(frozen=True)
class Aspect:
    """One passage topic: its fact-sentence templates and the relations questions can ask."""

    name: str
    facts: tuple[str, ...]
    relations: tuple[Relation, ...]


PERSON_ASPECTS: tuple[Aspect, ...] = (
    Aspect(
        "origin",
        (
            "{n} was born in {birth_town} in {birth_year}, the {ordinal} child of a {parent_job}.",
            "The parish book of {birth_town} records the baptism of {n}, {ordinal} child of a "
            "{parent_job}, in {birth_year}.",
            "{n} arrived in {birth_year} as the {ordinal} child of a {parent_job} living in {birth_town}.",
        ),
        (
            Relation("birth_town", "birth_town", (
                "Where was {n} born?",
                "What is the hometown of {n}?",
                "Which town does {n} come from originally?",
                "What was the birthplace of {n}?",
                "In which town did {n} grow up as a small child?",
            )),
            Relation("birth_year", "birth_year", (
                "In what year was {n} born?",
                "When was {n} born?",
                "What is the birth year of {n}?",
                "In which year did {n} first see daylight?",
            )),
        ),
    ),
    Aspect(
        "career",
        (
            "{n} worked as a {occupation} for the {employer} for most of {his} adult life.",
            "The {employer} paid {n} a salary as its {occupation} for many years.",
            "{n} joined the {employer} as an apprentice and became a respected {occupation} there.",
        ),
        (
            Relation("occupation", "occupation", (
                "What was the occupation of {n}?",
                "What did {n} do for a living?",
                "What trade did {n} practise?",
                "What was {n}'s profession?",
                "What kind of craftsperson was {n}?",
            )),
            Relation("employer", "employer", (
                "Which organisation employed {n}?",
                "Who did {n} work for?",
                "Which institution paid the wages of {n}?",
                "Who was the employer of {n}?",
            )),
        ),
    ),
    Aspect(
        "education",
        (
            "As a young student {n} studied {subject} under {mentor}, who shaped {his} thinking.",
            "{mentor} introduced {n} to {subject} and supervised {his} first research.",
            "{n} spent six years reading {subject} in the private library of {mentor}.",
        ),
        (
            Relation("subject", "subject", (
                "What subject did {n} study?",
                "Which discipline was {n} trained in?",
                "What field of learning did {n} pursue in {his} youth?",
                "What did {n} major in?",
            )),
            Relation("mentor", "mentor", (
                "Who taught {n}?",
                "Who was the mentor of {n}?",
                "Under whom did {n} study?",
                "Which teacher guided {n} as a pupil?",
                "Whose apprentice in learning was {n}?",
            )),
        ),
    ),
    Aspect(
        "works",
        (
            "{n} wrote the book {book}, which was first published in {pub_year}.",
            "In {pub_year} a printer released {book}, the long manuscript of {n}.",
            "{book}, a volume by {n}, went on sale in {pub_year}.",
        ),
        (
            Relation("book", "book", (
                "What book did {n} write?",
                "What is the title of the book by {n}?",
                "Which volume did {n} author?",
                "What is the best-known written work of {n}?",
            )),
            Relation("pub_year", "pub_year", (
                "When was the book by {n} published?",
                "In what year did {n} publish a book?",
                "In which year did the written work of {n} come out?",
                "What year was {book} released?",
            )),
        ),
    ),
    Aspect(
        "family",
        (
            "{n} married {spouse}, and the couple kept a {animal} called {pet}.",
            "{n} wed {spouse} in a small ceremony; their {animal}, {pet}, followed them everywhere.",
            "{n} shared a house with {spouse} and a {animal} named {pet}.",
        ),
        (
            Relation("spouse", "spouse", (
                "Who was the spouse of {n}?",
                "Whom did {n} marry?",
                "Who was the life partner of {n}?",
                "To whom was {n} wed?",
            )),
            Relation("pet", "pet", (
                "What was the pet of {n} called?",
                "What was the name of the pet of {n}?",
                "What name did {n} give to {his} animal companion?",
            )),
        ),
    ),
    Aspect(
        "tastes",
        (
            "{n} dressed almost always in {colour} and played the {instrument} most evenings.",
            "{n} painted every room of {his} house {colour} and practised the {instrument} daily.",
            "Friends knew {n} for {colour} clothes and for long evenings spent at the {instrument}.",
        ),
        (
            Relation("colour", "colour", (
                "What was the favourite colour of {n}?",
                "Which colour did {n} like best?",
                "What hue did {n} prefer?",
                "What shade did {n} wear most often?",
            )),
            Relation("instrument", "instrument", (
                "Which instrument did {n} play?",
                "What musical instrument could {n} perform on?",
                "What did {n} make music with?",
                "Which instrument was {n} a musician on?",
            )),
        ),
    ),
    Aspect(
        "later",
        (
            "{n} died in {death_town} in {death_year}, shortly after receiving the {award}.",
            "The grave of {n} in {death_town}, dated {death_year}, mentions the {award} {he} had won.",
            "Holder of the {award}, {n} was buried at {death_town} in {death_year}.",
        ),
        (
            Relation("death_town", "death_town", (
                "Where did {n} die?",
                "In which town did {n} pass away?",
                "Where did {n} spend {his} final days?",
                "What was the place of death of {n}?",
            )),
            Relation("death_year", "death_year", (
                "In what year did {n} die?",
                "When did {n} pass away?",
                "In which year did the life of {n} end?",
            )),
            Relation("award", "award", (
                "Which award did {n} receive?",
                "What honour was given to {n}?",
                "What prize did {n} win?",
            )),
        ),
    ),
)

TOWN_ASPECTS: tuple[Aspect, ...] = (
    Aspect(
        "geography",
        (
            "{n} lies on the banks of the {river} river in the province of {region}.",
            "The town of {n} stands where the {river} river bends, inside the province of {region}.",
        ),
        (
            Relation("river", "river", (
                "Which river flows through {n}?",
                "On what river is {n} situated?",
                "What waterway runs past {n}?",
            )),
            Relation("region", "region", (
                "In which province is {n}?",
                "What region does {n} belong to?",
                "Which province contains the town of {n}?",
            )),
        ),
    ),
    Aspect(
        "history",
        (
            "{n} was founded in {founded_year} by {founder}, who built its first mill.",
            "In {founded_year} {founder} founded the settlement of {n} around a single mill.",
        ),
        (
            Relation("founded_year", "founded_year", (
                "When was {n} founded?",
                "In what year was {n} established?",
                "How far back does {n} date, in years?",
            )),
            Relation("founder", "founder", (
                "Who founded {n}?",
                "Who established the settlement of {n}?",
                "Who is credited with starting the town of {n}?",
            )),
        ),
    ),
    Aspect(
        "economy",
        (
            "{n} is known for its {product}, sold at the market held every {weekday}.",
            "Traders come to {n} every {weekday} to buy its famous {product}.",
        ),
        (
            Relation("product", "product", (
                "What is {n} famous for producing?",
                "What goods does {n} export?",
                "What is the main product of {n}?",
            )),
            Relation("weekday", "weekday", (
                "On which day is the market held in {n}?",
                "Which day of the week do traders gather in {n}?",
            )),
        ),
    ),
    Aspect(
        "civic",
        (
            "The mayor of {n} is {mayor}, whose office faces the {landmark}.",
            "{mayor} serves as mayor of {n} and works beside the old {landmark}.",
        ),
        (
            Relation("mayor", "mayor", (
                "Who is the mayor of {n}?",
                "Who governs {n}?",
                "Who leads the town council of {n}?",
            )),
            Relation("landmark", "landmark", (
                "What is the best-known landmark in {n}?",
                "Which building is {n} famous for?",
                "What structure do visitors to {n} come to see?",
            )),
        ),
    ),
    Aspect(
        "culture",
        (
            "Every {month} {n} holds the {festival} festival with music and lanterns.",
            "The {festival} festival of {n} takes place each year in {month}.",
        ),
        (
            Relation("month", "month", (
                "In which month does {n} hold its festival?",
                "When is the annual celebration of {n} held?",
                "During which month do the people of {n} celebrate?",
            )),
            Relation("festival", "festival", (
                "What is the name of the festival of {n}?",
                "Which festival is celebrated in {n}?",
            )),
        ),
    ),
)

ORG_ASPECTS: tuple[Aspect, ...] = (
    Aspect(
        "founding",
        (
            "The {n} was founded in {founded_year} by {founder}.",
            "{founder} established the {n} in {founded_year}.",
        ),
        (
            Relation("founder", "founder", (
                "Who founded the {n}?",
                "Who set up the {n}?",
                "Who started the {n}?",
            )),
            Relation("founded_year", "founded_year", (
                "When was the {n} founded?",
                "In what year was the {n} established?",
                "Since which year has the {n} existed?",
            )),
        ),
    ),
    Aspect(
        "location",
        (
            "The {n} has its headquarters in {hq_town}, in a building called {building}.",
            "From its seat in {hq_town}, a house known as {building}, the {n} runs its affairs.",
        ),
        (
            Relation("hq_town", "hq_town", (
                "Where is the {n} based?",
                "In which town are the offices of the {n}?",
                "Where does the {n} have its headquarters?",
            )),
            Relation("building", "building", (
                "What is the name of the building of the {n}?",
                "In which house does the {n} meet?",
            )),
        ),
    ),
    Aspect(
        "activity",
        (
            "The {n} builds {org_product} and sells them to customers in {market_count} provinces.",
            "Most of the income of the {n} comes from making {org_product}.",
        ),
        (
            Relation("org_product", "org_product", (
                "What does the {n} make?",
                "What does the {n} manufacture?",
                "What is the line of business of the {n}?",
            )),
        ),
    ),
    Aspect(
        "leadership",
        (
            "The {n} is directed by {leader}, who was elected by its members.",
            "Since an election of its members, {leader} has led the {n}.",
        ),
        (
            Relation("leader", "leader", (
                "Who leads the {n}?",
                "Who is the head of the {n}?",
                "Who runs the {n}?",
            )),
        ),
    ),
    Aspect(
        "emblem",
        (
            "The emblem of the {n} shows a {emblem_colour} {emblem_animal} on a plain field.",
            "A {emblem_colour} {emblem_animal} is painted on every banner of the {n}.",
        ),
        (
            Relation("emblem_animal", "emblem_animal", (
                "What animal appears on the emblem of the {n}?",
                "Which creature is on the badge of the {n}?",
            )),
            Relation("emblem_colour", "emblem_colour", (
                "What colour is the emblem of the {n}?",
                "In which colour is the symbol of the {n} drawn?",
            )),
        ),
    ),
)

# Decoys evoke an aspect's topic without stating any fact. They are planted in the entity's *other*
# passages, so that topical wording alone ("childhood" for a hometown question) does not single out
# the gold passage: the retriever has to match the fact pattern ("was born in <town>").
DECOYS: dict[str, tuple[str, ...]] = {
    "origin": ("{He} often spoke fondly of the home town of {his} childhood.",
               "{He} seldom mentioned the place or the year of {his} birth.",
               "{He} rarely visited the town where {he} grew up.",
               "Historians dispute where and when {he} was born."),
    "career": ("{His} profession earned {him} a steady income and many clients.",
               "Colleagues admired {his} skill at the trade.",
               "{He} was proud of {his} job and of those who employed {him}.",
               "What {he} did for a living is a matter of debate."),
    "education": ("{He} never forgot the lessons of {his} teachers.",
                  "Study and learning mattered to {him} above all else.",
                  "{He} was a gifted pupil in {his} youth.",
                  "Who taught {him}, and what {he} studied, is unclear."),
    "works": ("{He} was a keen writer, though few of {his} books were printed.",
              "Several of {his} manuscripts were never published.",
              "Readers still argue about what {he} wrote.",
              "No copy of the book {he} wrote is known to survive."),
    "family": ("Marriage and family life mattered greatly to {him}.",
               "{His} household was always full of pets and guests.",
               "{He} and {his} partner were rarely apart.",
               "Little is known about whom {he} married."),
    "tastes": ("{He} was fond of music and of bright colours.",
               "{His} favourite pastimes were music and painting.",
               "{He} had strong opinions on musical instruments and dress.",
               "{His} favourite colour and instrument are not recorded."),
    "later": ("{His} final years and death were quiet ones.",
              "Late in life {he} won many honours and prizes.",
              "{His} passing was mourned across the province.",
              "Where and when {he} died is not recorded."),
    "geography": ("The river and the hills around it shape the local climate.",
                  "Maps of the province show it clearly."),
    "history": ("Its early history and founders are the subject of local legends.",
                "Its origins go back many centuries."),
    "economy": ("Trade and markets are the heart of local life.",
                "Merchants praise the goods made there."),
    "civic": ("The town council meets in a famous old building.",
              "Local government there is run by elected officials."),
    "culture": ("Its people love music, lanterns and yearly celebrations.",
                "Visitors come for the festivities."),
    "founding": ("Its founders and early years are the subject of a short history.",
                 "It is one of the oldest bodies of its kind."),
    "location": ("Its offices stand in a well-known house.",
                 "Where it is based has changed little over time."),
    "activity": ("Its products are sold far and wide.",
                 "It is best known for what it manufactures."),
    "leadership": ("Its head is chosen by the members.",
                   "Its leaders have always been elected."),
    "emblem": ("Its badge and symbol are recognised everywhere.",
               "Its banners are easy to spot at fairs."),
}
DECOY_PROBABILITY = 0.9

# Filler sentences carry no askable fact; {other} is another person, {place} another town.
PERSON_FILLERS = (
    "Little else about this period survives in the records.",
    "{He} kept detailed notebooks throughout these years.",
    "A letter from {other} describes this time with warmth.",
    "Neighbours remembered {him} as patient and exacting.",
    "Few documents from those years have been preserved.",
    "{He} later said this chapter shaped everything that followed.",
    "A portrait from this time hangs in the archive at {place}.",
    "{other} recalled meeting {him} around then.",
    "Contemporaries described {him} as quiet but stubborn.",
    "The surviving accounts of it are brief.",
    "{His} diaries mention a long journey to {place} that year.",
    "This is confirmed by a ledger kept by {other}.",
)
TOWN_FILLERS = (
    "Travellers from {place} often stop there on their way north.",
    "The town has a little over four thousand inhabitants.",
    "Its streets are narrow and paved with grey stone.",
    "A road connects it with {place} to the east.",
    "Old maps drawn by {other} show it clearly.",
    "Visitors praise its quiet squares and gardens.",
)
ORG_FILLERS = (
    "Its records are kept in a cellar archive.",
    "It has about two hundred members today.",
    "Rivals in {place} have long tried to copy its methods.",
    "{other} once wrote a short history of it.",
    "Its annual meeting is open to the public.",
    "It keeps close ties with traders in {place}.",
)


# --------------------------------------------------------------------------------------------------
# Generation


@dataclass
class _Entity:
    kind: str  # "person", "town" or "org"
    name: str
    attrs: dict[str, str]
    aspects: list[Aspect]
    passages: dict[str, Passage] = field(default_factory=dict)  # aspect name -> passage


def _template_words() -> set[str]:
    """Every English word the templates and vocabularies use: invented names must avoid them, so
    that a name never collides with an answer ("Harp") or a question word."""
    pools: list[Sequence[str]] = [
        OCCUPATIONS, SUBJECTS, COLOURS, INSTRUMENTS, ANIMALS, TITLE_ADJ, TITLE_NOUN, PRODUCTS,
        ORG_PRODUCTS, ORG_KINDS, LANDMARK_KINDS, AWARD_KINDS, MONTHS, WEEKDAYS, ORDINALS,
        PERSON_FILLERS, TOWN_FILLERS, ORG_FILLERS, *DECOYS.values(),
    ]
    for aspects in (PERSON_ASPECTS, TOWN_ASPECTS, ORG_ASPECTS):
        for a in aspects:
            pools.append(a.facts)
            for r in a.relations:
                pools.append(r.questions)
    return {w for pool in pools for text in pool for w in _WORD.findall(text.lower())}


class _Namer:
    """Invents unique capitalised words from syllables; every word is used for one name only."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = _template_words()

    def word(self, syllables: int = 2) -> str:
        for _ in range(10_000):
            w = "".join(
                self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) + self.rng.choice(_CODAS)
                for _ in range(syllables)
            )
            if 4 <= len(w) <= 9 and w not in self.used and not re.search(r"([a-z])\1\1", w):
                self.used.add(w)
                return w.capitalize()
        raise RuntimeError("ran out of invented names")  # pragma: no cover


_WORD = re.compile(r"[a-z0-9]+")


def _normalised(text: str) -> str:
    """Lower-cased word tokens joined by single spaces, padded: `` born in velmora 1843 ``."""
    return " " + " ".join(_WORD.findall(text.lower())) + " "


def contains_answer(text: str, answer: str) -> bool:
    """True when the answer's word tokens occur contiguously in the text (case/punctuation-blind).

    This is the DPR-style "has answer" test used to check the world; evaluation code may use its
    own, equivalent normalisation.
    """
    a = _normalised(answer)
    return a != "  " and a in _normalised(text)


def _fill(template: str, **slots: str) -> str:
    """Format a template and fix the article before a vowel ("a apothecary" -> "an apothecary")."""
    return re.sub(r"\b([Aa]) (?=[aeiouAEIOU])", r"\1n ", template.format(**slots))


_COMMON_WORDS: set[str] = set()


def _approx_tokens(text: str) -> int:
    """A rough SmolLM2 token count without loading a tokenizer: template words cost one token,
    invented names about one per 2.5 letters, numbers one per digit (plus a small constant bias)."""
    if not _COMMON_WORDS:
        _COMMON_WORDS.update(_template_words())
    n = 5
    for piece in re.findall(r"[A-Za-z]+|[0-9]+|[^\sA-Za-z0-9]", text):
        if piece.isdigit():
            n += len(piece) + 1
        elif piece.isalpha():
            n += 1 if piece.lower() in _COMMON_WORDS else max(1, round(len(piece) / 2.5))
        else:
            n += 1
    return n


def _pronouns(rng: random.Random) -> dict[str, str]:
    he, his, him = rng.choice((("he", "his", "him"), ("she", "her", "her")))
    return {"he": he, "his": his, "him": him, "He": he.capitalize(), "His": his.capitalize()}


_IT = {"he": "it", "his": "its", "him": "it", "He": "It", "His": "Its"}


def _build_entities(rng: random.Random, spec: SizeSpec) -> list[_Entity]:
    namer = _Namer(rng)
    people = [f"{namer.word(2)} {namer.word(2)}" for _ in range(spec.people)]
    towns = [namer.word(rng.choice((2, 3))) for _ in range(spec.towns)]
    orgs = [f"{namer.word(rng.choice((2, 3)))} {rng.choice(ORG_KINDS)}" for _ in range(spec.orgs)]
    books: list[str] = []
    while len(books) < spec.people:
        if rng.random() < 0.4:
            book = f"{rng.choice(TITLE_NOUN)}s of {namer.word(2)}"
        else:
            book = f"The {rng.choice(TITLE_ADJ)} {rng.choice(TITLE_NOUN)}"
        if book not in books:
            books.append(book)

    entities: list[_Entity] = []
    for i, name in enumerate(people):
        birth = rng.randint(1620, 1860)
        pub = birth + rng.randint(22, 45)
        death = pub + rng.randint(3, 30)
        occupation, parent_job = rng.sample(OCCUPATIONS, 2)
        birth_town, death_town = rng.sample(towns, 2)
        mentor = rng.choice([p for p in rng.sample(people, 2) if p != name])
        attrs = {
            "birth_town": birth_town, "birth_year": str(birth), "ordinal": rng.choice(ORDINALS),
            "parent_job": parent_job, "occupation": occupation, "employer": rng.choice(orgs),
            "subject": rng.choice(SUBJECTS), "mentor": mentor, "book": books[i],
            "pub_year": str(pub), "spouse": f"{namer.word(2)} {name.split()[1]}",
            "animal": rng.choice(ANIMALS), "pet": namer.word(2),
            "colour": rng.choice(COLOURS), "instrument": rng.choice(INSTRUMENTS),
            "death_town": death_town, "death_year": str(death),
            "award": f"{namer.word(2)} {rng.choice(AWARD_KINDS)}",
            **_pronouns(rng),
        }
        aspects = sorted(rng.sample(PERSON_ASPECTS, PASSAGES_PER_ENTITY), key=PERSON_ASPECTS.index)
        entities.append(_Entity("person", name, attrs, aspects))
    for name in towns:
        attrs = {
            "river": namer.word(2), "region": namer.word(rng.choice((2, 3))),
            "founded_year": str(rng.randint(900, 1500)), "founder": rng.choice(people),
            "product": rng.choice(PRODUCTS), "weekday": rng.choice(WEEKDAYS),
            "mayor": rng.choice(people), "landmark": f"{namer.word(2)} {rng.choice(LANDMARK_KINDS)}",
            "month": rng.choice(MONTHS), "festival": namer.word(2), **_IT,
        }
        entities.append(_Entity("town", name, attrs, list(TOWN_ASPECTS)))
    for name in orgs:
        attrs = {
            "founded_year": str(rng.randint(1500, 1800)), "founder": rng.choice(people),
            "hq_town": rng.choice(towns), "building": f"{namer.word(2)} House",
            "org_product": rng.choice(ORG_PRODUCTS),
            "market_count": rng.choice(("three", "five", "nine")), "leader": rng.choice(people),
            "emblem_colour": rng.choice(COLOURS), "emblem_animal": rng.choice(ANIMALS), **_IT,
        }
        entities.append(_Entity("org", name, attrs, list(ORG_ASPECTS)))
    return entities


def _write_passage(
    rng: random.Random, entity: _Entity, aspect: Aspect, people: list[str], towns: list[str]
) -> str:
    """One passage: the aspect's fact sentence, maybe a decoy, then fillers; 20-40 words in all."""
    fact = _fill(rng.choice(aspect.facts), n=entity.name, **entity.attrs)
    extra: list[str] = []
    n_words = len(fact.split())
    if rng.random() < DECOY_PROBABILITY:
        other_aspects = [a.name for a in entity.aspects if a.name != aspect.name]
        decoy = _fill(rng.choice(DECOYS[rng.choice(other_aspects)]), **entity.attrs)
        if n_words + len(decoy.split()) <= MAX_WORDS:
            extra.append(decoy)
            n_words += len(decoy.split())
    fillers = {"person": PERSON_FILLERS, "town": TOWN_FILLERS, "org": ORG_FILLERS}[entity.kind]
    # A filler's names must not carry an answer of this entity (or its own name) into a passage.
    forbidden = [_normalised(entity.attrs[r.slot]) for a in entity.aspects for r in a.relations]
    forbidden.append(_normalised(entity.name))
    target = rng.randint(*TARGET_WORDS)
    # First pass: fill towards the target without overshooting much; second pass (rare): reach
    # MIN_WORDS with whatever still fits under MAX_WORDS.
    for limit in (target + MAX_OVERSHOOT, MAX_WORDS):
        for j in rng.sample(range(len(fillers)), len(fillers)):
            if n_words >= (target if limit < MAX_WORDS else MIN_WORDS):
                break
            other, place = rng.choice(people), rng.choice(towns)
            sentence = _fill(fillers[j], other=other, place=place, **entity.attrs)
            if sentence in extra or n_words + len(sentence.split()) > limit:
                continue
            norm = _normalised(sentence)
            if any(f in norm for f in forbidden):
                continue
            draft = " ".join([entity.name, fact, *extra, sentence])
            if limit < MAX_WORDS and _approx_tokens(draft) > MAX_APPROX_TOKENS:
                continue
            extra.append(sentence)
            n_words += len(sentence.split())
    position = rng.randint(0, min(1, len(extra)))  # the fact comes first or second
    return " ".join(extra[:position] + [fact] + extra[position:])


def _candidate_questions(rng: random.Random, entity: _Entity) -> list[tuple[str, QAExample]]:
    """Every askable (relation, question) of an entity, at most ``per_entity`` picked later.

    A relation is askable only if its answer is in the gold passage and in none of the entity's
    other passages, and not in the question itself: checked on the text, not assumed.
    """
    out: list[tuple[str, QAExample]] = []
    for aspect in entity.aspects:
        gold = entity.passages[aspect.name]
        others = [p for a, p in entity.passages.items() if a != aspect.name]
        for rel in aspect.relations:
            answer = entity.attrs[rel.slot]
            question = _fill(rng.choice(rel.questions), n=entity.name, **entity.attrs)
            if (not contains_answer(gold.text, answer)
                    or any(contains_answer(p.text, answer) for p in others)
                    or contains_answer(question, answer)):
                continue
            qa = QAExample(id="", question=question, answers=[answer], gold_passage_ids=[gold.id])
            out.append((f"{entity.kind}.{rel.name}", qa))
    return out


def _pick(rng: random.Random, candidates: list[tuple[str, QAExample]], k: int) -> list[tuple[str, QAExample]]:
    """Up to ``k`` candidates, spread over different gold passages first."""
    by_passage: dict[str, list[tuple[str, QAExample]]] = {}
    for c in candidates:
        by_passage.setdefault(c[1].gold_passage_ids[0], []).append(c)
    groups = [rng.sample(g, len(g)) for g in by_passage.values()]
    rng.shuffle(groups)
    picked: list[tuple[str, QAExample]] = []
    while len(picked) < k and any(groups):
        for g in groups:
            if g and len(picked) < k:
                picked.append(g.pop())
    return picked


def generate_world(seed: int = 0, size: str = "default") -> World:
    """Generate the fictional world for ``seed`` and ``size`` (``"small"`` or ``"default"``)."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; expected one of {sorted(SIZES)}")
    spec = SIZES[size]
    rng = random.Random(f"attnrag-synth-v{GENERATOR_VERSION}-{seed}-{size}")
    entities = _build_entities(rng, spec)
    people = [e.name for e in entities if e.kind == "person"]
    towns = [e.name for e in entities if e.kind == "town"]

    # Opaque passage ids, assigned in shuffled order so that an id reveals neither entity nor aspect.
    slots = [(e, a) for e in entities for a in e.aspects]
    numbers = rng.sample(range(len(slots)), len(slots))
    for (entity, aspect), num in zip(slots, numbers):
        text = _write_passage(rng, entity, aspect, people, towns)
        entity.passages[aspect.name] = Passage(id=f"syn-p{num:05d}", title=entity.name, text=text)

    # Split entities, not questions: dev and test ask about entities that train never asks about.
    order = rng.sample(range(len(entities)), len(entities))
    wanted = {"test": spec.test, "dev": spec.dev, "train": spec.train}
    chosen: dict[str, list[tuple[str, QAExample]]] = {}
    pos = 0
    for split, need in wanted.items():
        pool: list[tuple[str, QAExample]] = []
        while pos < len(order) and (split == "train" or len(pool) < need):
            pool.extend(_pick(rng, _candidate_questions(rng, entities[order[pos]]), spec.per_entity))
            pos += 1
        if len(pool) < need:
            raise RuntimeError(f"only {len(pool)} questions for {split}, {need} wanted")  # pragma: no cover
        chosen[split] = rng.sample(pool, need)

    relations: dict[str, str] = {}
    out: dict[str, list[QAExample]] = {}
    for split, picked in chosen.items():
        picked.sort(key=lambda rq: (rq[1].gold_passage_ids[0], rq[0]))
        out[split] = []
        for i, (rel, qa) in enumerate(picked):
            qid = f"syn-{split}-{i:05d}"
            out[split].append(QAExample(qid, qa.question, qa.answers, qa.gold_passage_ids))
            relations[qid] = rel

    passages = sorted((p for e in entities for p in e.passages.values()), key=lambda p: p.id)
    return World(passages, out["train"], out["dev"], out["test"], seed=seed, size=size,
                 relations=relations)


def write_world(world: World, out_dir: str | Path) -> Path:
    """Write passages.jsonl, train/dev/test.jsonl and world.json (seed, size, counts) to ``out_dir``.

    Each file is written atomically; world.json also maps every question id to its relation, for
    per-relation analysis.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_passages(out / "passages.jsonl", world.passages)
    per_relation: dict[str, dict[str, int]] = {}
    for split, examples in world.splits().items():
        write_qa(out / f"{split}.jsonl", examples)
        for ex in examples:
            rel = world.relations.get(ex.id, "unknown")
            counts = per_relation.setdefault(rel, dict.fromkeys(SPLITS, 0))
            counts[split] += 1
    write_json(
        out / "world.json",
        {
            "generator": "attnrag.data.synth",
            "generator_version": GENERATOR_VERSION,
            "seed": world.seed,
            "size": world.size,
            "counts": {"passages": len(world.passages), **{s: len(v) for s, v in world.splits().items()}},
            "questions_per_relation": dict(sorted(per_relation.items())),
            "question_relation": dict(sorted(world.relations.items())),
        },
    )
    return out
