"""Item banks for list selection (GAPO paper, Appendix E and section 6).

Training categories are the paper's eight: Animals, Countries, Emotions, English words, Foods,
Letters, Numbers and Vehicles.  Held-out evaluation lists (section 6.1) and open-set prompts
(section 6.2) use categories never seen in training; :func:`check_disjoint` is enforced by tests.
"""

from __future__ import annotations

NUMBER_RANGE = (0, 9999)  # "numbers" items are random integers drawn by the generator

_ANIMALS = """
Grizzly Bear, Hermit Crab, Spotted Owl, Jerboa, Honeybee, White Ibis, Hawk Moth, Coelacanth, Crossbill,
Grebe, Guinea Fowl, Softshell Turtle, Oriental Stork, Harpy Eagle, Barracuda, Nighthawk, Sparrowhawk,
Manatee, Planarian, Squacco Heron, Bittern, Snipe, Hawksbill Turtle, Wildebeest, Gaur, Thick-knee,
Cormorant, Lion, Tiger, Elephant, Giraffe, Zebra, Kangaroo, Koala, Penguin, Dolphin, Humpback Whale,
Hammerhead Shark, Golden Eagle, Peregrine Falcon, Macaw, Barn Owl, Gray Wolf, Red Fox, Rabbit, Squirrel,
Beaver, Sea Otter, Moose, Bison, Camel, Llama, Alpaca, Hippopotamus, Rhinoceros, Cheetah, Leopard,
Jaguar, Gorilla, Chimpanzee, Lemur, Sloth, Armadillo, Hedgehog, Badger, Raccoon, Skunk, Walrus,
Harbor Seal, Octopus, Squid, Lobster, Shrimp, Jellyfish, Starfish, Salmon, Trout, Swordfish,
Pelican, Flamingo, Peacock, Ostrich, Emu, Hummingbird, Woodpecker, Sparrow, Robin, Iguana,
Chameleon, Gecko, Komodo Dragon, Tree Frog, Salamander, Axolotl, Platypus, Wombat, Tasmanian Devil,
Meerkat, Mongoose, Hyena, Warthog, Okapi, Tapir, Capybara, Porcupine, Mole, Bat, Firefly, Dragonfly
"""

_COUNTRIES = """
Canada, Mexico, Brazil, Argentina, Chile, Peru, Colombia, Venezuela, Ecuador, Bolivia, Uruguay,
Paraguay, France, Germany, Spain, Italy, Portugal, Greece, Norway, Sweden, Finland, Denmark, Poland,
Austria, Hungary, Ireland, Iceland, Belgium, Netherlands, Switzerland, Czechia, Slovakia, Romania,
Bulgaria, Croatia, Serbia, Ukraine, Estonia, Latvia, Lithuania, Japan, China, India, South Korea,
Vietnam, Thailand, Malaysia, Indonesia, Philippines, Pakistan, Bangladesh, Nepal, Sri Lanka, Mongolia,
Kazakhstan, Egypt, Kenya, Nigeria, Morocco, Ghana, Ethiopia, Tanzania, Uganda, Senegal, Algeria,
Tunisia, Namibia, Botswana, Zambia, Turkey, Iran, Israel, Jordan, Saudi Arabia, Qatar, Oman,
Australia, New Zealand, Fiji, Samoa, Cuba, Jamaica, Haiti, Panama, Costa Rica, Guatemala, Honduras
"""

_EMOTIONS = """
Reverent, Calm, Sympathetic, Intrigued, Astonished, Disgusted, Disappointed, Delighted, Rejected, Amused,
Triumphant, Captivated, Envious, Perplexed, Tense, Nostalgic, Impatient, Ecstatic, Uncomfortable, Proud,
Overwhelmed, Surprised, Fascinated, Intimidated, Apathetic, Happy, Sad, Angry, Anxious, Curious, Bored,
Excited, Nervous, Grateful, Jealous, Lonely, Hopeful, Ashamed, Confused, Annoyed, Relieved, Content,
Furious, Gloomy, Joyful, Melancholy, Serene, Irritated, Embarrassed, Guilty, Insecure, Inspired,
Resentful, Satisfied, Terrified, Thrilled, Worried, Wistful, Cheerful, Restless, Bitter, Tender,
Defiant, Euphoric, Frustrated, Humbled, Indifferent, Optimistic, Pessimistic, Vulnerable
"""

_ENGLISH_WORDS = """
Window, Garden, Pencil, Mirror, Blanket, Ladder, Candle, Pillow, Basket, Bucket, Hammer, Needle, Ribbon,
Saddle, Lantern, Compass, Anchor, Kettle, Teapot, Wallet, Harvest, Journey, Whisper, Thunder, Meadow,
Harbor, Castle, Bridge, Forest, Valley, Puzzle, Riddle, Shadow, Silver, Marble, Velvet, Feather,
Pebble, Crystal, Quiver, Blossom, Breeze, Canyon, Glacier, Horizon, Island, Jungle, Lagoon, Orchard,
Prairie, Summit, Tunnel, Voyage, Wander, Glimmer, Sparkle, Twilight, Echo, Fable, Legend, Mosaic,
Nectar, Oasis, Quarry, Rhythm, Saga, Tapestry, Umbrella, Vortex, Wisdom, Zenith, Bellow, Clatter
"""

_FOODS = """
Apple Pie, Banana Bread, Cherry Tart, Mango Salsa, Peach Cobbler, Pear, Plum, Grapefruit, Lemon Curd,
Sourdough, Cheddar, Butter, Spaghetti, Risotto, Ramen, Pizza, Cheeseburger, Taco, Sushi, Minestrone,
Caesar Salad, Ribeye Steak, Fried Chicken, Bacon, Pancake, Waffle, Blueberry Muffin, Oatmeal Cookie,
Glazed Donut, Greek Yogurt, Honeycomb, Almond, Walnut, Carrot Cake, Baked Potato, Tomato Soup,
Onion Rings, Garlic Bread, Bell Pepper, Spinach, Broccoli, Cauliflower, Avocado Toast, Hummus,
Falafel, Burrito, Enchilada, Quesadilla, Lasagna, Ravioli, Gnocchi, Paella, Couscous, Dumpling,
Spring Roll, Pad Thai, Curry, Biryani, Kebab, Croissant, Baguette, Bagel, Pretzel, Popcorn,
Brownie, Cheesecake, Tiramisu, Pudding, Granola, Porridge, Omelette, Quiche, Meatball, Goulash
"""

_VEHICLES = """
Car, Truck, Bus, Train, Bicycle, Motorcycle, Scooter, Tram, Subway, Airplane, Helicopter, Sailboat,
Cargo Ship, Yacht, Canoe, Kayak, Tractor, Minivan, Taxi, Ambulance, Fire Truck, Police Car, Race Car,
Cable Car, Gondola, Hovercraft, Submarine, Jet Ski, Snowmobile, Golf Cart, Forklift, Bulldozer,
Excavator, Dump Truck, Tanker, Ferry, Catamaran, Rowboat, Glider, Hot Air Balloon, Blimp, Rocket,
Space Shuttle, Unicycle, Tricycle, Skateboard, Rickshaw, Segway, Monorail, Steam Locomotive,
Pickup Truck, Limousine, Convertible, Station Wagon, Jeep, Dune Buggy, Go-Kart, Moped, Camper Van,
Tow Truck, Garbage Truck, School Bus, Double-Decker Bus, Trolleybus, Seaplane, Biplane, Zeppelin
"""


def _parse(block: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in block.replace("\n", " ").split(",") if x.strip())


TRAIN_CATEGORIES: dict[str, tuple[str, ...]] = {
    "animals": _parse(_ANIMALS),
    "countries": _parse(_COUNTRIES),
    "emotions": _parse(_EMOTIONS),
    "english_words": _parse(_ENGLISH_WORDS),
    "foods": _parse(_FOODS),
    "letters": tuple(chr(c) for c in range(ord("A"), ord("Z") + 1)),
    "numbers": (),  # drawn from NUMBER_RANGE
    "vehicles": _parse(_VEHICLES),
}

HELDOUT_LISTS: dict[str, tuple[str, ...]] = {
    "planets": ("Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune"),
    "musical_instruments": ("Guitar", "Piano", "Violin", "Drums", "Flute", "Saxophone", "Trumpet", "Cello"),
    "books": ("Pride and Prejudice", "Moby Dick", "War and Peace", "Hamlet", "Ulysses", "Dracula", "Emma", "Beloved"),
    "celebrities": ("Einstein", "Beyonce", "Oprah Winfrey", "Madonna", "Picasso", "Gandhi", "Shakespeare", "Mozart"),
    "flowers": ("Rose", "Tulip", "Daisy", "Lily", "Orchid", "Sunflower", "Daffodil", "Lavender"),
    "colors": ("Red", "Blue", "Green", "Yellow", "Purple", "Orange", "Pink", "Brown"),
    "languages": ("English", "Spanish", "French", "German", "Mandarin", "Arabic", "Hindi", "Portuguese"),
    "cities": ("Tokyo", "Paris", "London", "Cairo", "Sydney", "Toronto", "Mumbai", "Berlin"),
    "sports": ("Soccer", "Tennis", "Golf", "Cricket", "Rugby", "Hockey", "Boxing", "Cycling"),
    "movies": ("Titanic", "Avatar", "Inception", "Casablanca", "Jaws", "Gladiator", "Vertigo", "Psycho"),
}

OPEN_SET_CATEGORIES: dict[str, str] = {
    "city": "Name a city anywhere in the world. Answer with just the name.",
    "food": "Name a food. Answer with just the name.",
    "celebrity": "Name a celebrity. Answer with just the name.",
    "book": "Name a book title. Answer with just the title.",
    "animal": "Name an animal. Answer with just the name.",
    "country": "Name a country. Answer with just the name.",
    "movie": "Name a movie. Answer with just the title.",
    "instrument": "Name a musical instrument. Answer with just the name.",
    "sport": "Name a sport. Answer with just the name.",
    "color": "Name a color. Answer with just the name.",
}


def check_disjoint() -> list[str]:
    """Held-out items that also occur in a training bank (should be empty)."""
    train = {x.casefold() for items in TRAIN_CATEGORIES.values() for x in items}
    return [x for items in HELDOUT_LISTS.values() for x in items if x.casefold() in train]
