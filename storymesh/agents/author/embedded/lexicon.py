"""The embedded storyteller's word lists: creatures, places, obstacles, themes, names, styles.

Pure data, no logic beyond small lookups. The plot analyser recognises the words listed
here; the storyteller draws looks, scenery, obstacles and lessons from them. Setting keys
are the plain words the embedded illustrator looks for in a picture prompt (forest, sea,
castle, village, mountain, space, city, garden, desert), so keep them plain English.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Species:
    """A kind of character: how it looks, what it uses to hold things, where it lives."""

    noun: str
    colors: tuple[str, ...]
    feature: str
    limb: str = "paw"
    home: str = ""          # a setting key, used when the plot names no place
    person: bool = False    # people get hair and clothes instead of fur colours
    pronoun: str = ""       # fixed pronoun for gendered nouns (princess -> she)


def _s(noun: str, colors: str, feature: str, limb: str = "paw", home: str = "",
       person: bool = False, pronoun: str = "") -> Species:
    return Species(noun, tuple(colors.split("/")), feature, limb, home, person, pronoun)


SPECIES: Final[dict[str, Species]] = {s.noun: s for s in (
    _s("fox", "orange/red-brown/silver", "a bushy white-tipped tail", home="forest"),
    _s("rabbit", "white/grey/sandy brown", "long floppy ears", home="garden"),
    _s("bear", "brown/honey-coloured/black", "round fuzzy ears", home="forest"),
    _s("owl", "brown-speckled/snowy white", "big round golden eyes", "wing", "forest"),
    _s("dragon", "green/purple/ruby red", "little leathery wings and a curly tail", "claw",
       "mountain"),
    _s("mouse", "grey/tan/white", "round pink ears and a long thin tail", home="village"),
    _s("cat", "ginger/black/grey tabby", "white socks on all four paws", home="village"),
    _s("dog", "golden/spotted/chocolate brown", "one floppy ear and a wagging tail",
       home="village"),
    _s("turtle", "green/olive", "a shell patterned like a patchwork quilt", "flipper", "sea"),
    _s("penguin", "black-and-white", "a bright orange beak and stubby flippers", "flipper",
       "sea"),
    _s("whale", "blue-grey/deep blue", "a spout that sprays rainbow mist", "fin", "sea"),
    _s("dolphin", "silver-grey/sky blue", "a friendly curved smile", "fin", "sea"),
    _s("fish", "golden/striped orange/rainbow", "shimmering scales", "fin", "sea"),
    _s("octopus", "pink/purple/coral", "eight curly arms", "arm", "sea"),
    _s("crab", "red/orange", "two clicky claws", "claw", "sea"),
    _s("seal", "grey/speckled silver", "long whiskers and big dark eyes", "flipper", "sea"),
    _s("unicorn", "white/lilac/pale pink", "a shimmering spiral horn and a rainbow mane",
       "hoof", "castle"),
    _s("elephant", "grey/dusty pink", "big flapping ears and a long trunk", "trunk"),
    _s("lion", "golden/sandy", "a fluffy mane", home="desert"),
    _s("camel", "sandy/caramel", "two soft humps", "hoof", "desert"),
    _s("giraffe", "yellow-and-brown patched", "a very long neck", "hoof"),
    _s("duck", "yellow/white", "orange webbed feet", "wing", "garden"),
    _s("frog", "green/spotted green", "big bulgy eyes", "foot", "garden"),
    _s("hedgehog", "brown/chestnut", "soft prickly spines", home="garden"),
    _s("squirrel", "red/grey", "a fluffy curled tail", home="forest"),
    _s("wolf", "grey/silver", "silver-tipped fur and bright yellow eyes", home="forest"),
    _s("deer", "brown/fawn", "pale spots and tiny antlers", "hoof", "forest"),
    _s("horse", "chestnut/white/dappled grey", "a braided mane", "hoof", "village"),
    _s("pig", "pink/spotted pink", "a curly tail", "trotter", "village"),
    _s("hen", "speckled brown/white", "a wobbly red comb", "wing", "village"),
    _s("bee", "yellow-and-black striped", "tiny shiny wings", "leg", "garden"),
    _s("butterfly", "blue/orange/lemon yellow", "wings patterned like stained glass", "wing",
       "garden"),
    _s("snail", "brown/amber", "a swirly striped shell", "foot", "garden"),
    _s("monkey", "brown/golden", "a long curly tail", "hand", "forest"),
    _s("panda", "black-and-white", "round black eye patches", home="forest"),
    _s("otter", "brown/sleek dark brown", "sleek whiskers and a long tail", home="forest"),
    _s("raccoon", "grey/silver-grey", "a striped tail and a little black mask", "hand",
       "city"),
    _s("beaver", "brown", "big front teeth and a flat tail", home="forest"),
    _s("bird", "blue/red/yellow", "bright feathers", "wing", "garden"),
    _s("parrot", "green/scarlet", "a hooked beak and rainbow feathers", "wing", "forest"),
    _s("dinosaur", "green/orange/blue", "a long tail and tiny arms", "claw", "mountain"),
    _s("robot", "silver/copper/blue", "a shiny metal body and a blinking antenna", "hand",
       "city"),
    _s("girl", "curly red hair/long black braids/golden pigtails", "a yellow raincoat", "hand",
       "village", True, "she"),
    _s("boy", "short brown hair/messy blond hair/black curls", "a striped sweater", "hand",
       "village", True, "he"),
    _s("child", "curly brown hair/a black bob/sandy hair", "red boots", "hand", "village",
       True),
    _s("princess", "long golden hair/dark curls", "a sparkly crown", "hand", "castle", True,
       "she"),
    _s("prince", "neat brown hair/black curls", "a velvet cape", "hand", "castle", True, "he"),
    _s("queen", "silver hair/long dark hair", "a tall golden crown", "hand", "castle", True,
       "she"),
    _s("king", "a bushy grey beard/red hair", "a heavy golden crown", "hand", "castle", True,
       "he"),
    _s("knight", "short brown hair/red hair", "shiny silver armour", "hand", "castle", True),
    _s("wizard", "a long white beard/wild grey hair", "a starry blue hat", "hand", "castle",
       True, "he"),
    _s("witch", "wild purple hair/long black hair", "a pointy purple hat", "hand", "village",
       True, "she"),
    _s("pirate", "a red bandana/a curly black beard", "an eye patch and a striped shirt",
       "hand", "sea", True),
    _s("astronaut", "short dark hair/a bouncy ponytail", "a white space suit with a round helmet",
       "hand", "space", True),
    _s("fairy", "pale green hair/silver hair", "see-through shimmering wings", "hand",
       "garden", True, "she"),
    _s("mermaid", "long sea-green hair/coral-red hair", "a shimmering scaly tail", "hand",
       "sea", True, "she"),
    _s("giant", "shaggy brown hair/wild red hair", "patched enormous trousers", "hand",
       "mountain", True),
    _s("troll", "mossy green hair/tufty orange hair", "a knobbly nose", "hand", "mountain"),
    _s("monster", "blue/purple/green", "shaggy fur and a friendly grin", "hand"),
    _s("ghost", "pale white/misty blue", "a wobbly see-through body", "hand", "castle"),
    _s("alien", "green/purple", "three blinking eyes", "hand", "space"),
    _s("tortoise", "olive/sandy brown", "a high domed shell", "foot", "garden"),
    _s("cloud", "white/pale grey/pink-edged", "a soft puffy shape and rosy cheeks", "edge"),
    _s("grandmother", "silver curls/a white bun", "round glasses and a knitted cardigan",
       "hand", "village", True, "she"),
    _s("grandfather", "white hair/a grey moustache", "a flat cap and a woolly jumper",
       "hand", "village", True, "he"),
    # The closest kinds for what the lexicon does not know: a person by their role, a
    # creature, and a thing (machines, toys, weather) with a friendly face.
    _s("person", "short brown hair/black curls/a red ponytail", "a kind smile", "hand",
       "village", True),
    _s("creature", "brown/grey/golden", "soft fur and bright eyes"),
    _s("thing", "red/blue/yellow/green", "a friendly painted face", "side"),
)}

# Plurals, babies and near-synonyms -> a SPECIES key.
SPECIES_ALIASES: Final[dict[str, str]] = {
    "bunny": "rabbit", "bunnies": "rabbit", "hare": "rabbit", "kitten": "cat", "kitty": "cat",
    "puppy": "dog", "puppies": "dog", "pup": "dog", "cub": "bear", "teddy": "bear",
    "duckling": "duck", "fawn": "deer", "pony": "horse",
    "piglet": "pig", "chicken": "hen", "chick": "hen", "dino": "dinosaur",
    "mice": "mouse", "wolves": "wolf", "kid": "child", "daughter": "girl", "son": "boy",
    "sister": "girl", "brother": "boy", "spaceman": "astronaut", "bot": "robot",
    "android": "robot", "mermaids": "mermaid", "fishes": "fish", "geese": "duck",
    "goose": "duck", "caterpillar": "butterfly", "grandma": "grandmother",
    "granny": "grandmother", "grandpa": "grandfather", "granddad": "grandfather",
    "grandad": "grandfather",
    "ladybug": "bee", "ladybird": "bee",
}

# Plain words the plot analyser maps to a setting key (first match in the plot wins).
SETTING_WORDS: Final[dict[str, str]] = {
    **dict.fromkeys(("forest", "forests", "woods", "wood", "woodland", "jungle", "trees",
                     "tree", "lake", "river", "pond", "swamp"), "forest"),
    **dict.fromkeys(("sea", "seas", "ocean", "oceans", "beach", "island", "shore", "reef",
                     "underwater", "harbour", "harbor", "waves", "coral", "ship", "boat"),
                    "sea"),
    **dict.fromkeys(("castle", "castles", "palace", "kingdom", "tower", "throne", "dungeon"),
                    "castle"),
    **dict.fromkeys(("village", "town", "farm", "cottage", "house", "home", "school",
                     "street", "barn"), "village"),
    **dict.fromkeys(("mountain", "mountains", "hill", "hills", "peak", "cave", "caves",
                     "volcano", "valley", "cliff", "glacier", "snowy"), "mountain"),
    **dict.fromkeys(("space", "moon", "planet", "planets", "rocket", "galaxy", "comet",
                     "spaceship", "mars", "orbit"), "space"),
    **dict.fromkeys(("city", "cities", "skyscraper", "subway", "downtown", "rooftop",
                     "rooftops"), "city"),
    **dict.fromkeys(("garden", "gardens", "meadow", "park", "field", "fields", "flowers",
                     "orchard", "backyard"), "garden"),
    **dict.fromkeys(("desert", "dunes", "oasis", "sand", "sahara", "canyon"), "desert"),
}

# More places a plot may name, beyond SETTING_WORDS: the setting each is drawn in.
PLACE_WORDS: Final[dict[str, str]] = {
    **dict.fromkeys(("kitchen", "fair", "circus", "square", "bakery", "market", "road",
                     "bridge", "church", "mill", "windmill", "well", "yard", "stable",
                     "shop", "station", "playground"), "village"),
    **dict.fromkeys(("zoo", "hospital", "library", "museum", "gutter", "airport",
                     "stadium", "theatre", "theater", "factory"), "city"),
    **dict.fromkeys(("outback", "savanna", "savannah", "prairie"), "desert"),
    **dict.fromkeys(("lighthouse", "iceberg", "bay", "lagoon", "pier", "port"), "sea"),
    **dict.fromkeys(("arctic", "north pole", "snowfield", "treetops"), "mountain"),
    **dict.fromkeys(("pumpkin patch", "greenhouse", "allotment"), "garden"),
}


@dataclass(frozen=True, slots=True)
class Obstacle:
    """Something in the way: what it is, a chapter title, a try that fails, the fix."""

    problem: str
    title: str
    attempt: str
    solution: str


def _o(problem: str, title: str, attempt: str, solution: str) -> Obstacle:
    return Obstacle(problem, title, attempt, solution)


@dataclass(frozen=True, slots=True)
class Setting:
    """A place: its name in a sentence, spots inside it, scenery, weather, trouble, helpers."""

    key: str
    place: str
    spots: tuple[str, ...]
    sensory: tuple[str, ...]
    weathers: tuple[str, ...]
    hobbies: tuple[str, ...]
    goals: tuple[str, ...]
    helpers: tuple[str, ...]
    obstacles: tuple[Obstacle, ...]
    sound: str


SETTINGS: Final[dict[str, Setting]] = {s.key: s for s in (
    Setting(
        "forest", "the Whispering Forest",
        ("the old oak tree", "a mossy clearing", "the bramble path", "the babbling brook",
         "a hollow log", "the tall pines"),
        ("the leaves whispered in the wind", "the air smelled of pine needles",
         "sunlight dripped through the branches like honey"),
        ("rainy", "foggy", "windy", "sunny"),
        ("collect shiny acorns", "count the mushrooms", "listen to the birds sing"),
        ("find the golden acorn", "find the hidden spring", "find the way home"),
        ("owl", "squirrel", "deer", "hedgehog"),
        (_o("a wide, rushing river", "The Rushing River", "jump across the water",
            "crossed on the slippery stepping stones, one careful hop at a time"),
         _o("a tangle of thorny brambles", "The Bramble Maze", "push through the thorns",
            "found a secret rabbit tunnel underneath and crawled through"),
         _o("a fallen tree across the path", "The Fallen Tree", "climb over the trunk",
            "rolled a stone beside it and made a little step"),
         _o("a dark, echoing cave", "The Echoing Cave", "tiptoe into the dark",
            "followed the glow-worms, who lit the way like tiny lanterns"),
         _o("a muddy bog that squelched and sucked", "The Squelchy Bog", "wade through the mud",
            "hopped from one tussock of grass to the next"),
         _o("a tall hedge of nettles", "The Nettle Hedge", "push through the nettles",
            "wrapped their legs in big dock leaves and tiptoed through")),
        "Rustle, rustle!"),
    Setting(
        "sea", "the Sparkling Sea",
        ("the coral reef", "a sandy cove", "the old lighthouse", "a rock pool",
         "the deep blue water", "a tiny island"),
        ("the waves sang a salty song", "seagulls called high above",
         "the water glittered like a million tiny mirrors"),
        ("windy", "rainy", "sunny", "foggy"),
        ("collect seashells", "race the waves", "watch the boats sail by"),
        ("find the lost pearl", "reach the faraway island", "find the way home"),
        ("dolphin", "turtle", "crab", "seal"),
        (_o("a huge, crashing wave", "The Giant Wave", "swim straight through it",
            "dived under it together, where the water was calm"),
         _o("a forest of tangly seaweed", "The Seaweed Tangle", "wriggle through the weeds",
            "followed a little fish who knew the secret path"),
         _o("a whirlpool spinning round and round", "The Whirlpool", "paddle past it",
            "rode the edge of the swirl like a slide and shot out the other side"),
         _o("a thick grey fog over the water", "Lost in the Fog", "find the way in the fog",
            "listened for the lighthouse bell and followed its song"),
         _o("a grumpy old crab guarding the channel", "The Grumpy Crab", "sneak past the crab",
            "brought the crab a shiny shell, and it let them pass"),
         _o("a reef of sharp, spiky rocks", "The Spiky Reef", "swim over the rocks",
            "waited for the high tide and floated safely over")),
        "Splish, splash!"),
    Setting(
        "castle", "the Castle on the Hill",
        ("the great hall", "the tallest tower", "the castle gate", "the royal kitchen",
         "the winding staircase", "the rose courtyard"),
        ("banners fluttered from every tower", "candles flickered along the stone walls",
         "trumpets echoed through the halls"),
        ("windy", "rainy", "sunny", "foggy"),
        ("polish the shields", "explore the secret passages", "play in the courtyard"),
        ("find the lost crown", "save the kingdom", "open the secret door"),
        ("knight", "ghost", "cat", "wizard"),
        (_o("a drawbridge pulled up tight", "The Drawbridge", "shout for the guards",
            "found the old rope that worked the drawbridge and pulled together"),
         _o("a staircase with a hundred steps", "The Hundred Steps", "run all the way up",
            "counted the steps out loud and rested every twenty"),
         _o("a locked door with no key", "The Locked Door", "push the door open",
            "found the key hidden under a loose stone"),
         _o("a long, dark corridor", "The Dark Corridor", "walk into the dark",
            "carried a candle and sang a song to feel brave"),
         _o("a moat full of murky water", "The Murky Moat", "swim across the moat",
            "floated across on an old wooden shield"),
         _o("a hall of mirrors that all looked the same", "The Hall of Mirrors",
            "find the real door", "followed the draught of fresh air to the real door")),
        "Clang, clang!"),
    Setting(
        "village", "the little village of Appleby",
        ("the market square", "the old bakery", "the village pond", "the red barn",
         "the crooked bridge", "the bell tower"),
        ("the smell of fresh bread floated down the street",
         "chimneys puffed little clouds of smoke", "neighbours waved from their windows"),
        ("rainy", "windy", "sunny", "snowy"),
        ("help at the bakery", "feed the ducks", "ring the bicycle bell"),
        ("find the missing cake", "win the village fair", "find a new friend"),
        ("dog", "cat", "hen", "mouse"),
        (_o("a muddy puddle as big as a pond", "The Enormous Puddle", "leap over the mud",
            "laid planks across it like a little bridge"),
         _o("a busy market full of feet and carts", "The Busy Market", "dash between the carts",
            "climbed onto a cart and rode it across the square"),
         _o("a tall fence with no gate", "The Tall Fence", "climb the fence",
            "found a loose board and squeezed through"),
         _o("a barking guard dog at the gate", "The Guard Dog", "sneak past the dog",
            "shared a biscuit, and the dog wagged its tail and let them pass"),
         _o("a wild, windy washing line", "The Washing Line", "climb the flapping sheets",
            "waited for the wind to drop and slid along the line"),
         _o("a bridge closed for mending", "The Broken Bridge", "jump the gap",
            "asked the miller, who rowed them across the stream")),
        "Ding, dong!"),
    Setting(
        "mountain", "the Misty Mountains",
        ("a narrow ledge", "the snowy peak", "a glittering ice cave", "the rocky path",
         "a high meadow", "the old stone bridge"),
        ("cold wind whistled between the rocks", "the clouds drifted below like soft wool",
         "pebbles clattered down the slopes"),
        ("snowy", "windy", "foggy", "sunny"),
        ("climb the big boulders", "watch the eagles soar", "slide down the grassy slopes"),
        ("reach the top of the mountain", "find the glowing crystal", "find the way home"),
        ("dragon", "bear", "giant", "wolf"),
        (_o("a steep, icy slope", "The Icy Slope", "scramble up the ice",
            "cut little steps in the snow and climbed them one by one"),
         _o("a deep crack in the ground", "The Great Crack", "jump across the crack",
            "laid a long branch across it and crawled over slowly"),
         _o("a snowstorm swirling all around", "The Snowstorm", "walk through the storm",
            "sheltered in a cave and waited until the snow stopped"),
         _o("a boulder blocking the path", "The Big Boulder", "push the boulder",
            "found a narrow path around the side"),
         _o("a river of melting ice", "The Melting River", "leap over the water",
            "followed it up to where it was narrow enough to step across"),
         _o("a cliff too steep to climb", "The Steep Cliff", "climb straight up",
            "found an old goat trail zigzagging up the side")),
        "Whoosh, whoosh!"),
    Setting(
        "space", "the starry sky of outer space",
        ("the silver moon", "a purple planet", "a ring of space rocks", "the rocket ship",
         "a sparkling comet", "the space station"),
        ("stars twinkled all around", "planets glowed like giant marbles",
         "everything floated gently, light as a feather"),
        ("starry", "clear", "starry", "clear"),
        ("count the stars", "float upside down", "wave at the passing comets"),
        ("find the lost star", "reach the moon", "find the way home"),
        ("alien", "robot", "astronaut"),
        (_o("a field of tumbling space rocks", "The Space Rocks", "zoom straight through",
            "steered slowly, counting to three between each rock"),
         _o("a rocket with an empty fuel tank", "Out of Fuel", "push the rocket",
            "caught the wind of a passing comet and sailed on it"),
         _o("a dark planet with no light at all", "The Dark Planet", "fly into the dark",
            "switched on their helmet lamps and held hands"),
         _o("a big spinning black hole", "The Spinning Hole", "fly past it fast",
            "flew the long way round, far from its pull"),
         _o("a moon covered in slippery ice", "The Icy Moon", "walk across the ice",
            "bounced across in long, slow moon-hops"),
         _o("a cloud of tickly space dust", "The Dust Cloud", "fly straight through",
            "closed the windows tight and flew through giggling")),
        "Zoom, zoom!"),
    Setting(
        "city", "the big bright city",
        ("the busy crossroads", "a rooftop garden", "the underground station", "the city park",
         "the tallest skyscraper", "a little corner shop"),
        ("cars hummed and honked below", "lights blinked in a thousand windows",
         "the smell of hot pretzels drifted from a cart"),
        ("rainy", "windy", "sunny", "foggy"),
        ("ride the bus", "watch the pigeons", "count the yellow taxis"),
        ("find the way home", "find the lost kite", "reach the top of the tallest tower"),
        ("raccoon", "robot", "dog", "cat"),
        (_o("a river of rushing traffic", "The Busy Road", "run across the road",
            "waited for the green light and crossed holding hands"),
         _o("a maze of tall buildings", "The Building Maze", "find the way alone",
            "followed the pigeons, who knew every street"),
         _o("an escalator going the wrong way", "The Wrong-Way Stairs", "run up the moving stairs",
            "found the right escalator and rode it up"),
         _o("a crowd so big it hid the sky", "The Great Crowd", "push through the crowd",
            "climbed onto a bench and spotted the way"),
         _o("a lift that stopped between floors", "The Stuck Lift", "press every button",
            "pressed the help button and waited calmly"),
         _o("a park gate locked for the night", "The Locked Park", "climb the gate",
            "asked the park keeper, who jingled her keys and smiled")),
        "Beep, beep!"),
    Setting(
        "garden", "the Sunflower Garden",
        ("the vegetable patch", "the little pond", "the tall sunflowers", "the garden shed",
         "the rose bushes", "the old stone wall"),
        ("bees buzzed from flower to flower", "the grass smelled sweet after the rain",
         "petals drifted down like pink snow"),
        ("sunny", "rainy", "windy", "sunny"),
        ("smell the flowers", "chase the butterflies", "water the tomatoes"),
        ("find the rainbow flower", "save the garden", "grow the biggest pumpkin"),
        ("bee", "frog", "hedgehog", "butterfly"),
        (_o("a tall stone wall", "The Tall Wall", "jump over the wall",
            "climbed the ivy, leaf by leaf"),
         _o("a wide, deep pond", "The Pond", "swim across",
            "sailed across on a big lily pad"),
         _o("a jungle of giant weeds", "The Weed Jungle", "push through the weeds",
            "followed the path the snails had made"),
         _o("a sprinkler spraying cold water", "The Sprinkler", "run through the spray",
            "waited until it turned the other way, then dashed past"),
         _o("a thorny rose bush", "The Rose Bush", "squeeze through the thorns",
            "found the gap where the gardener had been pruning"),
         _o("a watering can tipped over into a flood", "The Flood", "run through the water",
            "sailed across in an upside-down flowerpot")),
        "Buzz, buzz!"),
    Setting(
        "desert", "the Golden Desert",
        ("the tall dunes", "a shady oasis", "the old stone arch", "a rocky canyon",
         "the dry riverbed", "a lonely palm tree"),
        ("the sand shimmered in the heat", "the wind drew ripples in the sand",
         "the sky was wide and blue from end to end"),
        ("sunny", "windy", "sunny", "clear"),
        ("draw pictures in the sand", "watch the lizards", "slide down the dunes"),
        ("find the hidden oasis", "find the lost treasure", "find water for everyone"),
        ("camel", "lion", "fox"),
        (_o("a sandstorm roaring across the dunes", "The Sandstorm", "walk into the wind",
            "hid behind a big rock until the sand settled"),
         _o("a dune as tall as a house", "The Giant Dune", "run up the dune",
            "zigzagged up it slowly, the way the camels do"),
         _o("a canyon with no bridge", "The Canyon", "jump across",
            "found an old rope bridge hidden by the rocks"),
         _o("a burning hot stretch of sand", "The Hot Sands", "run across quickly",
            "travelled at night, when the sand was cool"),
         _o("a mirage that looked like water", "The Mirage", "run towards the water",
            "followed the tracks of the camels instead of the shimmer"),
         _o("a field of prickly cacti", "The Cactus Field", "run between the cacti",
            "walked slowly, single file, in the shade of the biggest one")),
        "Swish, swish!"),
)}

GENERIC_OBSTACLES: Final = (
    _o("a wobbly rope bridge", "The Wobbly Bridge", "run across",
       "crossed slowly, holding on tight and never looking down"),
    _o("a maze of twisty paths", "The Twisty Maze", "guess the way",
       "marked each turn with a pebble so they never got lost"),
    _o("a grumpy goose who would not move", "The Grumpy Goose", "shoo the goose away",
       "asked the goose kindly, and it waddled aside"),
    _o("a gate with a riddle on it", "The Riddle Gate", "guess the answer",
       "thought very hard together and solved the riddle"),
    _o("a steep, slippery hill", "The Slippery Hill", "run up the hill",
       "held on to the long grass and climbed step by step"),
    _o("a deep, dark tunnel", "The Dark Tunnel", "walk into the dark",
       "counted their steps out loud until they saw light again"),
)

# How the day looks in each setting when the weather is good or bad (setting-free fallback).
WEATHER_SENTENCES: Final[dict[str, str]] = {
    "sunny": "Warm sunshine ((lit|spilled over)) {spot}",
    "rainy": "Soft rain pattered ((down|down on every leaf and stone))",
    "snowy": "Snowflakes drifted ((down|down, soft and silent as feathers))",
    "foggy": "A grey fog ((hid everything|curled around everything like a sleepy cat))",
    "windy": "The wind ((blew and blew|tugged and whistled and would not be still))",
    "stormy": "Thunder rumbled and the rain ((poured|poured down in silver sheets))",
    "clear": "The sky was ((clear|clear and calm, without a single cloud))",
    "starry": "((Stars|A thousand stars)) twinkled ((above|above like scattered sugar))",
}

TRAITS: Final = (
    "shy", "brave", "curious", "lonely", "little", "small", "tiny", "clumsy", "grumpy",
    "clever", "kind", "sleepy", "young", "old", "happy", "sad", "silly", "gentle", "proud",
    "timid", "cheerful", "bold", "careful", "playful", "quiet", "noisy", "lazy", "busy",
    "forgetful", "friendly", "lost", "hungry", "scared", "wise",
)
DEFAULT_TRAITS: Final = ("curious", "cheerful", "gentle", "clever", "playful", "kind")
# Traits that read badly after "little" or as an adjective of size alone.
SIZE_TRAITS: Final = frozenset({"little", "small", "tiny", "young", "old"})

ACCESSORIES: Final = (
    "a red scarf", "a tiny blue backpack", "a yellow bow tie", "a green knitted hat",
    "round glasses", "a striped scarf", "a little satchel", "a flower behind one ear",
    "a purple cape", "shiny red boots",
)

NAMES: Final = (
    "Pip", "Luna", "Milo", "Hazel", "Finn", "Rosie", "Otto", "Mabel", "Theo", "Ivy",
    "Benny", "Clover", "Dot", "Felix", "Poppy", "Juniper", "Ollie", "Wren", "Toby", "Nell",
    "Rufus", "Tilly", "Arlo", "Daisy", "Bramble", "Kiko", "Sunny", "Pebble", "Maple", "Ziggy",
    "Bea", "Cosmo", "Fern", "Gus", "Lulu", "Nico", "Penny", "Quill", "Rory", "Suki",
    "Basil", "Coco", "Dash", "Ember", "Flora", "Hugo", "Iris", "Jasper", "Kit", "Lark",
)
# Names a reader takes for a girl's or a boy's: a "she" is never called Milo, nor a "he"
# Mabel. The rest suit anyone.
SHE_NAMES: Final = frozenset({
    "Luna", "Hazel", "Rosie", "Mabel", "Ivy", "Poppy", "Nell", "Tilly", "Daisy", "Bea", "Fern",
    "Lulu", "Penny", "Suki", "Flora", "Iris",
})
HE_NAMES: Final = frozenset({
    "Milo", "Finn", "Otto", "Theo", "Benny", "Felix", "Ollie", "Toby", "Rufus", "Arlo", "Cosmo",
    "Gus", "Nico", "Basil", "Hugo", "Jasper",
})


def name_suits(name: str, pronoun: str) -> bool:
    """Whether a reader would take `name` for someone called `pronoun` ("she" or "he")."""
    other = HE_NAMES if pronoun == "she" else SHE_NAMES if pronoun == "he" else frozenset()
    return name not in other


# Capitalised words that are never a character's name.
NOT_NAMES: Final = frozenset({
    "A", "An", "The", "Once", "One", "In", "On", "At", "When", "Then", "But", "And", "So",
    "I", "He", "She", "They", "It", "His", "Her", "Their", "Its", "This", "That", "There",
    "With", "After", "Before", "Every", "Some", "Who", "What", "Where", "Why", "How",
    "Mr", "Mrs", "Ms", "Dr", "Grandma", "Grandpa", "Mom", "Mum", "Dad", "Christmas",
    "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "Earth",
})


@dataclass(frozen=True, slots=True)
class Theme:
    """A theme's voice in the story: what the friend says and the lesson at the end."""

    quote: str
    lesson: str


THEMES: Final[dict[str, Theme]] = {
    "friendship": Theme("Friends help each other. I will come with you",
                        "a good friend makes every road shorter"),
    "courage": Theme("Being brave does not mean you are not scared. It means you try anyway",
                     "brave means trying even when you feel scared"),
    "kindness": Theme("A little kindness can light up the darkest path",
                      "kindness always finds its way back to you"),
    "sharing": Theme("If we share what we have, there is enough for everyone",
                     "sharing makes good things bigger"),
    "honesty": Theme("Telling the truth is the first step on the right path",
                     "the truth is always the best place to start"),
    "perseverance": Theme("Big things are done one small step at a time",
                          "you can do hard things one step at a time"),
    "teamwork": Theme("Alone we are small, but together we are strong",
                      "together we can do what no one can do alone"),
    "curiosity": Theme("Every question is a door. Let us open it",
                       "asking questions opens the whole wide world"),
    "family": Theme("Home is wherever the people who love you are",
                    "family is always there to catch you"),
    "nature": Theme("If we look after nature, nature looks after us",
                    "every leaf and stone is worth caring for"),
    "patience": Theme("Good things come to those who wait and keep trying",
                      "waiting and trying again is a kind of magic"),
    "acceptance": Theme("Being different is what makes you special",
                        "everyone belongs, just as they are"),
    "gratitude": Theme("Let us be thankful for every small good thing",
                       "saying thank you makes the heart feel full"),
    "imagination": Theme("If you can dream it, you can try it",
                         "a good idea can grow from a tiny dream"),
    "hope": Theme("Even the longest night ends with a sunrise",
                  "there is always a little light to follow"),
}

THEME_ALIASES: Final[dict[str, str]] = {
    "friends": "friendship", "friend": "friendship", "friendships": "friendship",
    "bravery": "courage", "brave": "courage", "fear": "courage", "fears": "courage",
    "overcoming fear": "courage", "kind": "kindness", "empathy": "kindness",
    "caring": "kindness", "share": "sharing", "generosity": "sharing", "truth": "honesty",
    "persistence": "perseverance", "determination": "perseverance", "resilience": "perseverance",
    "never give up": "perseverance", "cooperation": "teamwork", "working together": "teamwork",
    "discovery": "curiosity", "exploration": "curiosity", "adventure": "curiosity",
    "learning": "curiosity", "home": "family", "love": "family", "environment": "nature",
    "animals": "nature", "diversity": "acceptance", "inclusion": "acceptance",
    "being different": "acceptance", "self-acceptance": "acceptance", "thankfulness": "gratitude",
    "creativity": "imagination", "dreams": "imagination", "optimism": "hope",
}

# Art style -> how a picture prompt names it.
STYLE_PHRASES: Final[dict[str, str]] = {
    "children_book": "children's book illustration, bright friendly colours",
    "watercolor": "soft watercolor painting, gentle washes of colour",
    "pencil_sketch": "pencil sketch, fine hatching on cream paper",
    "comic": "comic book panel, bold ink outlines",
    "pixel_art": "pixel art, crisp retro pixels",
    "oil_painting": "oil painting, rich brush strokes",
    "papercut": "papercut collage, layered paper shapes",
    "storybook_vintage": "vintage storybook illustration, muted old colours",
}

MOODS: Final[dict[str, str]] = {
    "setup": "cosy and hopeful", "trouble": "worried", "attempt": "determined",
    "friend": "warm and friendly", "together": "cheerful", "setback": "anxious",
    "climax": "tense then joyful", "resolution": "happy and peaceful",
}


def species_of(word: str) -> Species | None:
    """The Species for a word (plural, alias or exact), or None."""
    word = word.lower()
    key = SPECIES_ALIASES.get(word, word)
    if key in SPECIES:
        return SPECIES[key]
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", "")):
        if key.endswith(suffix) and key[: -len(suffix)] + repl in SPECIES:
            return SPECIES[key[: -len(suffix)] + repl]
    return None


def theme_of(word: str) -> str | None:
    """The THEMES key for a theme word, or None for a theme we have no voice for."""
    word = word.strip().lower()
    key = THEME_ALIASES.get(word, word)
    return key if key in THEMES else None
