"""Demo products for local runs and demos: a small coffee-gear shop (prices in EUR cents).

``emporium-catalog seed`` upserts them; running it again changes nothing.
One product has no stock, so the storefront can show "out of stock".
"""

from __future__ import annotations

from emporium.catalog.repository import SeedProduct

DEMO_PRODUCTS: tuple[SeedProduct, ...] = (
    SeedProduct(
        "espresso-machine-duo",
        "Duo espresso machine",
        "Dual-boiler espresso machine with PID temperature control and a 58 mm group.",
        "machines",
        124900,
        "EUR",
        50,
    ),
    SeedProduct(
        "burr-grinder-conical",
        "Conical burr grinder",
        "40 mm steel conical burrs, 60 grind steps from espresso to French press.",
        "grinders",
        18900,
        "EUR",
        120,
    ),
    SeedProduct(
        "hand-grinder-travel",
        "Travel hand grinder",
        "Compact hand grinder with stainless burrs; fits inside an AeroPress.",
        "grinders",
        7900,
        "EUR",
        200,
    ),
    SeedProduct(
        "pour-over-dripper",
        "Ceramic pour-over dripper",
        "Cone dripper in glazed porcelain, size 02, for one to four cups.",
        "brewers",
        2490,
        "EUR",
        300,
    ),
    SeedProduct(
        "paper-filters-100",
        "Paper filters, 100 pack",
        "Oxygen-bleached cone filters, size 02.",
        "accessories",
        590,
        "EUR",
        500,
    ),
    SeedProduct(
        "gooseneck-kettle",
        "Gooseneck kettle",
        "0.9 l electric kettle with a precise spout and temperature hold.",
        "accessories",
        8900,
        "EUR",
        150,
    ),
    SeedProduct(
        "coffee-scale",
        "Coffee scale with timer",
        "0.1 g resolution, built-in timer, water-resistant.",
        "accessories",
        4490,
        "EUR",
        180,
    ),
    SeedProduct(
        "french-press-1l",
        "French press, 1 l",
        "Double-walled stainless steel press that keeps coffee hot.",
        "brewers",
        3990,
        "EUR",
        90,
    ),
    SeedProduct(
        "milk-jug-350",
        "Milk jug, 350 ml",
        "Steel milk pitcher with a sharp spout for latte art.",
        "accessories",
        1990,
        "EUR",
        250,
    ),
    SeedProduct(
        "beans-ethiopia-250",
        "Ethiopia Yirgacheffe beans, 250 g",
        "Washed, light roast: jasmine, bergamot and lemon.",
        "coffee",
        1390,
        "EUR",
        400,
    ),
    SeedProduct(
        "beans-brazil-1kg",
        "Brazil Cerrado beans, 1 kg",
        "Natural, medium roast: chocolate, hazelnut; a forgiving espresso base.",
        "coffee",
        2990,
        "EUR",
        350,
    ),
    SeedProduct(
        "cold-brew-tower",
        "Cold brew drip tower",
        "Glass and walnut slow-drip tower, 600 ml. Sold out until the next batch.",
        "brewers",
        21900,
        "EUR",
        0,
    ),
)
