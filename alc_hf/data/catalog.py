"""A built-in synthetic product catalog and the retailer offers that refer to it: file-free, deterministic per seed.

What it models: a marketplace matches the free-text offers that shops upload ("sony wh1000xm5 wl kopfhörer schwarz
NEU") against its clean catalog ("Sony WH-1000XM5 Wireless Headphones, Black"). The catalog (the labels) is built from
about 15 product types (headphones, SSDs, phones, cables, TVs, laptops, ...), each with realistic brands, model
families with neighbouring numbers (WH-1000XM4/XM5, 980/990 PRO, Galaxy S23/S24) and variants (colour, capacity,
size, wattage, length, layout), so that most products have near misses: same brand and type, another model or another
variant. The offers (the queries) are written the way shops write them: reordered words, odd casing, abbreviations
("2TB", "wl", "hp"), model numbers spelled differently ("WH1000XM5", "wh-1000 xm5"), missing or extra attributes
("free shipping", "OVP", seller codes), German or Spanish words, and typos. An offer that omits a variant attribute
(colour, capacity, ...) matches every variant it does not rule out, and bundles ("... + charger") match both products,
so some queries have several positives. Each query also lists hard negatives: products of the same brand and type
that are not positives (other variant or neighbouring model).

The labels depend only on ``seed`` and ``num_products``; the splits draw their offers from disjoint random streams of
the same seed and never share a query text.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from alc_hf.core.query_labels import QueryLabelData, RaggedIds
from alc_hf.data.formats import normalise_text

SPLITS: tuple[str, ...] = ("trn", "val", "tst")
# Offers per catalog product in each split.
SPLIT_RATES: dict[str, float] = {"trn": 2.0, "val": 0.25, "tst": 0.3}
# Splits are generated in this order; each one drops texts an earlier one already used (so tst never depends on trn).
_GENERATION_ORDER: tuple[str, ...] = ("tst", "val", "trn")
_STREAM: dict[str, int] = {"trn": 1, "val": 2, "tst": 3}

# colour -> (German, Spanish)
_COLOURS: dict[str, tuple[str, str]] = {
    "Black": ("Schwarz", "Negro"),
    "White": ("Weiß", "Blanco"),
    "Silver": ("Silber", "Plata"),
    "Blue": ("Blau", "Azul"),
    "Grey": ("Grau", "Gris"),
    "Space Grey": ("Spacegrau", "Gris espacial"),
    "Red": ("Rot", "Rojo"),
    "Green": ("Grün", "Verde"),
    "Pink": ("Rosa", "Rosa"),
    "Graphite": ("Graphit", "Grafito"),
    "Pale Grey": ("Hellgrau", "Gris claro"),
    "Teal": ("Petrol", "Verde azulado"),
    "Purple": ("Lila", "Morado"),
    "Midnight": ("Mitternacht", "Medianoche"),
    "Beige": ("Beige", "Beige"),
    "Titanium": ("Titan", "Titanio"),
}


@dataclass(frozen=True)
class _TypeSpec:
    name: str  # as the catalog writes it
    words: dict[str, tuple[str, ...]]  # language -> how offers name the type
    axes: tuple[tuple[str, tuple], ...]  # (attribute kind, values) of the variants
    brands: dict[str, str]  # brand -> "model; model{a|b}; ..." (braces expand to neighbouring models)
    extras: tuple[str, ...]  # descriptors offers add that the catalog does not state
    accessory: bool = False  # may be the second item of a bundle


_TYPES: dict[str, _TypeSpec] = {
    "headphones": _TypeSpec(
        "Wireless Headphones",
        {
            "en": ("wireless headphones", "headphones", "bluetooth headphones", "wl headphones", "hp", "headset"),
            "de": ("kopfhörer", "bluetooth kopfhörer", "funkkopfhörer", "over-ear kopfhörer"),
            "es": ("auriculares", "auriculares inalámbricos", "cascos bluetooth"),
        },
        (("colour", ("Black", "White", "Silver", "Blue", "Beige")),),
        {
            "Sony": "WH-1000XM{3|4|5}; WF-1000XM{4|5}; WH-CH{520|720N}",
            "Bose": "QuietComfort {35 II|45}; QuietComfort Ultra; QuietComfort Earbuds II",
            "Sennheiser": "Momentum {3|4} Wireless; HD {350BT|450BT}; Accentum Plus",
            "JBL": "Tune {510BT|520BT|710BT|760NC}; Live {660NC|670NC}",
            "Jabra": "Elite {45h|85h|85t|10}",
            "Beats": "Studio Pro; Solo {3|4}; Studio Buds",
        },
        ("noise cancelling", "anc", "over-ear", "bluetooth 5.3", "30h battery", "with mic"),
    ),
    "ssd": _TypeSpec(
        "NVMe SSD",
        {
            "en": ("nvme ssd", "ssd", "m.2 ssd", "solid state drive", "internal ssd", "m2 nvme"),
            "de": ("ssd festplatte", "interne ssd", "nvme festplatte"),
            "es": ("disco ssd", "unidad ssd", "disco duro ssd"),
        },
        (("storage", (250, 500, 1000, 2000, 4000)),),
        {
            "Samsung": "{970|980|990} PRO; {970|990} EVO Plus; 870 EVO",
            "WD": "Black SN{770|850X}; Blue SN{570|580}; Red SN700",
            "Crucial": "P{3|5} Plus; P3; T{500|700}",
            "Kingston": "KC{2500|3000}; NV{2|3}; Fury Renegade",
            "Seagate": "FireCuda {530|540}; BarraCuda Q5",
            "Lexar": "NM{620|710|790}",
        },
        ("pcie 4.0", "m.2 2280", "gen4", "7000 mb/s", "with heatsink", "tlc"),
    ),
    "smartphone": _TypeSpec(
        "Smartphone",
        {
            "en": ("smartphone", "phone", "mobile phone", "cell phone", "unlocked phone"),
            "de": ("handy", "smartphone", "mobiltelefon"),
            "es": ("móvil", "teléfono móvil", "smartphone libre"),
        },
        (("storage", (128, 256, 512)), ("colour", ("Black", "Blue", "Green", "White", "Purple"))),
        {
            "Samsung": "Galaxy S{22|23|24}; Galaxy S{23|24} Ultra; Galaxy A{34|35|54|55}",
            "Apple": "iPhone {13|14|15}; iPhone {14|15} Pro; iPhone 15 Pro Max",
            "Google": "Pixel {7|8|9}; Pixel {7a|8a}; Pixel 8 Pro",
            "Xiaomi": "{13T|14T}; Redmi Note {12|13} Pro; Redmi {12C|13C}",
            "Motorola": "Moto G{54|84}; Edge {40|50} Pro",
            "OnePlus": "{11|12}; Nord {3|CE 3}",
        },
        ("5g", "dual sim", "unlocked", "6.1 inch", "sim free", "android"),
    ),
    "cable": _TypeSpec(
        "USB-C to USB-C Cable",
        {
            "en": ("usb-c cable", "usb c to usb c cable", "type-c cable", "charging cable", "usbc cable", "c2c cable"),
            "de": ("usb-c kabel", "ladekabel", "usb c ladekabel"),
            "es": ("cable usb-c", "cable de carga", "cable tipo c"),
        },
        (("watt", (60, 100, 240)), ("length", (0.5, 1, 2, 3)), ("colour", ("Black", "White"))),
        {
            "Anker": "PowerLine III; PowerLine III Flow; {543|765}",
            "Belkin": "BoostCharge; BoostCharge Pro",
            "UGREEN": "Nexode; Uno",
            "Baseus": "Superior; Crystal Shine; Dynamic {2|3}",
            "Amazon Basics": "Nylon Braided; Basic",
        },
        ("braided", "fast charging", "pd", "usb 2.0", "e-marker", "nylon"),
        accessory=True,
    ),
    "monitor": _TypeSpec(
        "Monitor",
        {
            "en": ("monitor", "display", "gaming monitor", "pc monitor", "screen"),
            "de": ("monitor", "bildschirm", "pc bildschirm"),
            "es": ("monitor", "pantalla", "monitor pc"),
        },
        (("colour", ("Black", "Silver")),),
        {
            "Dell": "UltraSharp U{2422H|2723QE|2724D|3223QE}; S{2721DGF|2722DC|3221QS}",
            "LG": "UltraGear 27GP{850|950}; UltraGear 27GN{800|850}; UltraFine 27UP{650|850}",
            "Samsung": "Odyssey G{5|7|9}; ViewFinity S{6|8}",
            "ASUS": "ProArt PA{278QV|279CV}; TUF Gaming VG{249Q1A|27AQ}",
            "BenQ": "PD{2700U|2705U|3200U}; MOBIUZ EX{2510S|2710Q}",
            "AOC": "24G2{U|SPU}; Q27G2{U|S}",
        },
        ("ips", "144hz", "usb-c", "hdr400", "height adjustable", "1ms"),
    ),
    "tv": _TypeSpec(
        "4K TV",
        {
            "en": ("4k tv", "tv", "smart tv", "uhd tv", "television", "4k uhd smart tv"),
            "de": ("fernseher", "4k fernseher", "smart tv"),
            "es": ("televisor", "televisor 4k", "smart tv"),
        },
        (("size", (43, 50, 55, 65, 75, 85)),),
        {
            "LG": "OLED evo C{2|3|4}; OLED evo G{3|4}; QNED{81|86}",
            "Samsung": "Neo QLED QN{90C|90D|95C}; OLED S{90C|90D|95C}; Crystal UHD CU{7179|8079}",
            "Sony": "Bravia XR A{80L|95L}; Bravia XR X{90L|95L}; Bravia 7",
            "Philips": "OLED{807|808|908}; Ambilight PUS{8108|8808}",
            "TCL": "C{745|805|845}; P{745|755}",
            "Hisense": "U{6K|7K|8K}; A{6K|7K}",
        },
        ("hdr10+", "dolby vision", "120hz", "hdmi 2.1", "2023", "2024"),
    ),
    "laptop": _TypeSpec(
        "Laptop",
        {
            "en": ("laptop", "notebook", "ultrabook", "nb"),
            "de": ("laptop", "notebook", "tragbarer computer"),
            "es": ("portátil", "ordenador portátil", "notebook"),
        },
        (("ram", (8, 16, 32)), ("storage", (256, 512, 1000, 2000))),
        {
            "Dell": "XPS 13 {9315|9340}; XPS 15 {9520|9530}; Inspiron 14 {5430|5440}; Latitude {5440|7440}",
            "Lenovo": "ThinkPad X1 Carbon Gen {10|11|12}; ThinkPad T14 Gen {3|4}; IdeaPad Slim {3|5}; Yoga {7i|9i}",
            "HP": "EliteBook {840|860} G{9|10}; Pavilion {14|15}; Envy x360 {13|15}; Spectre x360 14",
            "Apple": "MacBook Air 13 M{1|2|3}; MacBook Air 15 M{2|3}; MacBook Pro 14 M{3|3 Pro}",
            "ASUS": "ZenBook 14 UX{3402|3405}; VivoBook {15|16}; ROG Zephyrus G{14|16}",
            "Acer": "Swift Go {14|16}; Aspire {3|5}; Nitro {5|V 15}",
        },
        ("windows 11", "fhd", "backlit keyboard", "intel core i7", "ryzen 7", "14 inch"),
    ),
    "mouse": _TypeSpec(
        "Wireless Mouse",
        {
            "en": ("wireless mouse", "mouse", "wl mouse", "bluetooth mouse", "gaming mouse"),
            "de": ("maus", "kabellose maus", "funkmaus"),
            "es": ("ratón", "ratón inalámbrico", "mouse"),
        },
        (("colour", ("Black", "White", "Graphite", "Pale Grey", "Pink")),),
        {
            "Logitech": "MX Master {2S|3|3S}; MX Anywhere {3|3S}; M{185|240|330|720}; Lift",
            "Razer": "DeathAdder V{2|3} Pro; Basilisk V3 Pro; Viper V{2|3} Pro; Orochi V2",
            "SteelSeries": "Rival {3|5} Wireless; Aerox {3|5} Wireless; Prime Wireless",
            "Corsair": "Dark Core RGB Pro; M75 Air; Katar Elite",
            "Microsoft": "Arc Mouse; Bluetooth Mouse; Surface Mobile Mouse",
        },
        ("ergonomic", "silent", "usb receiver", "8000 dpi", "rechargeable", "multi-device"),
    ),
    "keyboard": _TypeSpec(
        "Keyboard",
        {
            "en": ("keyboard", "wireless keyboard", "mechanical keyboard", "kb", "bluetooth keyboard"),
            "de": ("tastatur", "kabellose tastatur", "funktastatur"),
            "es": ("teclado", "teclado inalámbrico", "teclado mecánico"),
        },
        (("layout", ("US", "German", "UK")), ("colour", ("Black", "White", "Grey"))),
        {
            "Logitech": "MX Keys; MX Keys S; MX Keys Mini; K{380|400 Plus|780}; G{213|915}",
            "Keychron": "K{2|3|8} Pro; Q{1|2|3}; V{1|3}",
            "Corsair": "K{55|70|100} RGB",
            "Razer": "BlackWidow V{3|4}; Huntsman V{2|3} Pro; Ornata V3",
            "Cherry": "KC {1000|6000} Slim; MX {3.0S|10.0}",
        },
        ("rgb", "backlit", "hot-swappable", "multi-device", "low profile", "brown switches"),
    ),
    "powerbank": _TypeSpec(
        "Power Bank",
        {
            "en": ("power bank", "powerbank", "portable charger", "battery pack", "pb"),
            "de": ("powerbank", "externer akku", "zusatzakku"),
            "es": ("batería externa", "power bank", "cargador portátil"),
        },
        (("mah", (5000, 10000, 20000, 26800)), ("colour", ("Black", "White", "Blue"))),
        {
            "Anker": "PowerCore III; PowerCore Slim; {533|737}",
            "Xiaomi": "Power Bank {3|3 Pro|3 Ultra Compact}",
            "Baseus": "Blade; Bipow; Adaman Metal",
            "UGREEN": "Nexode PB{501|502}",
            "INIU": "BI-B{41|61|62}",
            "Belkin": "BoostCharge Plus; BoostCharge Pro",
        },
        ("usb-c pd", "fast charge", "slim", "led display", "22.5w", "2 ports"),
        accessory=True,
    ),
    "charger": _TypeSpec(
        "Wall Charger",
        {
            "en": ("wall charger", "charger", "usb-c charger", "power adapter", "gan charger", "chgr"),
            "de": ("ladegerät", "netzteil", "usb-c ladegerät", "schnellladegerät"),
            "es": ("cargador", "cargador de pared", "cargador rápido"),
        },
        (("watt", (20, 30, 45, 65, 100)), ("colour", ("White", "Black"))),
        {
            "Anker": "Nano {II|III}; PowerPort III; {735|737} GaNPrime",
            "Belkin": "BoostCharge {Pro|Dual}",
            "UGREEN": "Nexode {Mini|Pro|X}",
            "Apple": "USB-C Power Adapter; Dual USB-C Power Adapter",
            "Samsung": "EP-T{1510|2510|4510}",
            "Baseus": "GaN{3|5} Pro; Cube Pro",
        },
        ("gan", "pd 3.0", "foldable plug", "eu plug", "pps", "fast charging"),
        accessory=True,
    ),
    "memorycard": _TypeSpec(
        "microSD Card",
        {
            "en": ("microsd card", "micro sd", "microsdxc", "memory card", "sd card", "msd"),
            "de": ("speicherkarte", "micro sd karte", "microsd speicherkarte"),
            "es": ("tarjeta microsd", "tarjeta de memoria", "tarjeta micro sd"),
        },
        (("storage", (32, 64, 128, 256, 512, 1000)),),
        {
            "SanDisk": "Extreme; Extreme PRO; Ultra; High Endurance",
            "Samsung": "EVO Plus; PRO Plus; EVO Select; PRO Endurance",
            "Kingston": "Canvas Go! Plus; Canvas Select Plus; High Endurance",
            "Lexar": "Professional {1066x|1800x}; PLAY",
            "PNY": "Elite-X; Pro Elite; XLR8",
        },
        ("uhs-i", "u3", "a2", "v30", "with adapter", "class 10"),
        accessory=True,
    ),
    "smartwatch": _TypeSpec(
        "Smartwatch",
        {
            "en": ("smartwatch", "smart watch", "fitness watch", "gps watch", "sw"),
            "de": ("smartwatch", "fitnessuhr", "sportuhr"),
            "es": ("reloj inteligente", "smartwatch", "reloj deportivo"),
        },
        (("case", (41, 45)), ("colour", ("Black", "Silver", "Pink", "Blue", "Green"))),
        {
            "Apple": "Watch Series {8|9|10}; Watch SE; Watch Ultra; Watch Ultra 2",
            "Samsung": "Galaxy Watch {5|6|7}; Galaxy Watch 5 Pro",
            "Garmin": "Forerunner {255|265|955|965}; Venu {2|3}; Fenix {7|8}",
            "Fitbit": "Versa {3|4}; Sense 2; Charge {5|6}",
            "Amazfit": "GTR {3|4}; GTS {3|4}; Balance",
            "Huawei": "Watch GT {3|4|5}; Watch Fit {2|3}",
        },
        ("gps", "heart rate", "amoled", "lte", "sport band", "nfc"),
    ),
    "tablet": _TypeSpec(
        "Tablet",
        {
            "en": ("tablet", "tab", "android tablet", "wifi tablet"),
            "de": ("tablet", "tablet pc"),
            "es": ("tableta", "tablet"),
        },
        (("storage", (64, 128, 256, 512)), ("colour", ("Space Grey", "Silver", "Blue"))),
        {
            "Apple": "iPad {9th|10th} Gen; iPad Air M{1|2}; iPad Pro 11 M{2|4}; iPad mini {6|7}",
            "Samsung": "Galaxy Tab S{8|9}; Galaxy Tab S9 FE; Galaxy Tab A{8|9}",
            "Lenovo": "Tab P{11|12}; Tab M{10|11}",
            "Xiaomi": "Pad {5|6}; Redmi Pad SE",
            "Amazon": "Fire HD {8|10}; Fire Max 11",
            "Microsoft": "Surface Pro {9|10}; Surface Go {3|4}",
        },
        ("wifi", "10.9 inch", "wi-fi + cellular", "with pen", "2022", "lte"),
    ),
    "speaker": _TypeSpec(
        "Bluetooth Speaker",
        {
            "en": ("bluetooth speaker", "speaker", "portable speaker", "wireless speaker", "bt speaker", "spkr"),
            "de": ("lautsprecher", "bluetooth lautsprecher", "musikbox"),
            "es": ("altavoz", "altavoz bluetooth", "altavoz portátil"),
        },
        (("colour", ("Black", "Blue", "Red", "Teal", "White")),),
        {
            "JBL": "Flip {5|6}; Charge {4|5}; Clip {4|5}; Go {3|4}; Xtreme 3",
            "Sony": "SRS-XB{13|23|33|43}; SRS-XE{200|300}; ULT Field 1",
            "Bose": "SoundLink {Flex|Micro|Revolve+ II}",
            "Ultimate Ears": "Boom 3; Wonderboom {3|4}; Megaboom 3",
            "Marshall": "Emberton {II|III}; Stanmore III; Acton III",
            "Anker": "Soundcore {2|3}; Soundcore Motion {300|X600}",
        },
        ("waterproof", "ip67", "partyboost", "20h playtime", "outdoor", "stereo"),
    ),
}

_EXTRAS: dict[str, tuple[str, ...]] = {
    "en": ("new", "free shipping", "brand new", "original", "sealed", "fast delivery", "best price", "in stock"),
    "de": ("neu", "OVP", "versandkostenfrei", "neuware", "rechnung mit mwst", "blitzversand", "top angebot"),
    "es": ("nuevo", "envío gratis", "original", "precintado", "oferta", "garantía 2 años"),
}
_BUNDLE_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("+", "+", "with", "bundle with", "&"),
    "de": ("+", "mit", "inkl.", "im set mit"),
    "es": ("+", "con", "pack con"),
}
_LAYOUT_WORDS: dict[str, tuple[str, ...]] = {
    "US": ("US", "US layout", "QWERTY US", "us-intl"),
    "German": ("DE", "German layout", "QWERTZ", "deutsches layout", "DE layout"),
    "UK": ("UK", "UK layout", "QWERTY UK", "british"),
}
_WORD_ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "QuietComfort": ("QC",),
    "ThinkPad": ("TP",),
    "Galaxy": ("Gal.",),
    "Wireless": ("WL", "Wless"),
    "UltraSharp": ("US",),
    "UltraGear": ("UG",),
    "Professional": ("Pro",),
    "Generation": ("Gen",),
    "Momentum": ("Mom.",),
}


@dataclass(frozen=True)
class Product:
    """One catalog product: ``title`` is its label text, ``index`` its position in the labels.

    ``model_rank`` numbers the models of one (type, brand) in catalog order, so neighbouring models (XM4/XM5) differ
    by one; ``attributes`` are the (kind, value) pairs of its variant, e.g.
    ``(("storage", 2000), ("colour", "Black"))``.
    """

    index: int
    type: str
    brand: str
    model: str
    model_rank: int
    attributes: tuple[tuple[str, object], ...]
    title: str

    @property
    def family(self) -> tuple[str, str, str]:
        """(type, brand, model): products that differ only in their variant attributes."""
        return self.type, self.brand, self.model


def _expand_models(spec: str) -> list[str]:
    """``"WH-1000XM{3|4|5}; Lift"`` -> ``["WH-1000XM3", "WH-1000XM4", "WH-1000XM5", "Lift"]``."""
    models: list[str] = []
    for part in spec.split(";"):
        pieces = re.split(r"\{([^}]*)\}", part.strip())
        choices = [[piece] if i % 2 == 0 else piece.split("|") for i, piece in enumerate(pieces)]
        models.extend("".join(combo).strip() for combo in itertools.product(*choices))
    return models


def _format_storage(gb: int) -> str:
    return f"{gb // 1000} TB" if gb >= 1000 else f"{gb} GB"


def _format_number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# How the catalog writes an attribute of each kind ("{}": the value); other kinds (colour) are the value itself.
_LABEL_FORMATS = {
    "ram": "{} GB RAM",
    "size": '{}"',
    "watt": "{} W",
    "length": "{} m",
    "mah": "{} mAh",
    "case": "{} mm",
    "layout": "{} Layout",
}


def _label_attribute(kind: str, value: object) -> str:
    if kind == "storage":
        return _format_storage(int(value))  # type: ignore[arg-type]
    return _LABEL_FORMATS.get(kind, "{}").format(_format_number(value))


def _all_products() -> list[tuple[str, str, str, int, tuple[tuple[str, object], ...]]]:
    rows = []
    for type_key, spec in _TYPES.items():
        kinds = [kind for kind, _ in spec.axes]
        for brand, model_spec in spec.brands.items():
            for rank, model in enumerate(_expand_models(model_spec)):
                for values in itertools.product(*(values for _, values in spec.axes)):
                    rows.append((type_key, brand, model, rank, tuple(zip(kinds, values, strict=True))))
    return rows


def _title(type_key: str, brand: str, model: str, attributes: tuple[tuple[str, object], ...]) -> str:
    head = f"{brand} {model} {_TYPES[type_key].name}"
    return ", ".join([head, *(_label_attribute(kind, value) for kind, value in attributes)])


def max_num_products() -> int:
    """How many distinct products the built-in catalog can hold (the largest valid ``num_products``)."""
    return len(_all_products())


@lru_cache(maxsize=8)
def _catalog(seed: int, num_products: int) -> tuple[Product, ...]:
    rows = _all_products()
    if not 1 <= num_products <= len(rows):
        raise ValueError(f"num_products must be in [1, {len(rows)}], got {num_products}")
    rng = random.Random(f"alc_hf.catalog:{seed}:catalog")
    chosen = sorted(rng.sample(range(len(rows)), num_products))
    return tuple(
        Product(index, type_key, brand, model, rank, attributes, _title(type_key, brand, model, attributes))
        for index, (type_key, brand, model, rank, attributes) in enumerate(rows[i] for i in chosen)
    )


def catalog_products(seed: int = 0, num_products: int = 3000) -> list[Product]:
    """The product records behind the labels of ``builtin_catalog(seed, ..., num_products)``, in label order."""
    return list(_catalog(seed, num_products))


# ----------------------------------------------------------------------------------------------------------------
# Offers


def _typo(rng: random.Random, word: str) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.random()
    if kind < 0.4:  # swap neighbours
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind < 0.75:  # drop
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]  # double


def _model_text(rng: random.Random, model: str) -> str:
    r = rng.random()
    words = model.split()
    if r < 0.3:
        text = model
    elif r < 0.45:
        text = re.sub(r"[\s\-]", "", model)  # WH1000XM5
    elif r < 0.6:
        text = re.sub(r"(?<=\d)(?=[A-Za-z])", " ", model.replace("-", " " if rng.random() < 0.5 else "-"))
    elif r < 0.72 and len(words) > 1:
        text = " ".join(words[1:]) if rng.random() < 0.5 else " ".join(words[:-1]) + words[-1]
    elif r < 0.84:
        text = " ".join(rng.choice(_WORD_ABBREVIATIONS[w]) if w in _WORD_ABBREVIATIONS else w for w in words)
    else:
        text = re.sub(r"(?<=[A-Za-z])-(?=\d)|(?<=\d)-(?=[A-Za-z])", "", model).replace(" ", rng.choice(["", " ", "-"]))
    return text


def _attribute_text(rng: random.Random, kind: str, value: object, language: str) -> str:
    if kind == "colour":
        de, es = _COLOURS[str(value)]
        if language == "de" and rng.random() < 0.8:
            return de
        if language == "es" and rng.random() < 0.8:
            return es
        return str(value)
    if kind in ("storage", "ram"):
        gb = int(value)  # type: ignore[call-overload]
        number, unit = (gb // 1000, "TB") if gb >= 1000 else (gb, "GB")
        unit = rng.choice([unit, unit, unit[0], unit.lower()])
        text = f"{number}{rng.choice(['', '', ' '])}{unit}"
        if kind == "ram" and rng.random() < 0.6:
            text += rng.choice([" RAM", " ram", " DDR5", " memory"])
        return text
    if kind == "size":
        unit = {"de": ["zoll", '"', " Zoll"], "es": ["pulgadas", '"', " pulg"]}.get(
            language, ['"', " inch", "in", "''"]
        )
        cm = round(int(value) * 2.54)  # type: ignore[call-overload]
        return rng.choice([f"{value}{rng.choice(unit)}", f"{value} {rng.choice(unit)}".replace('  "', '"'), f"{cm}cm"])
    if kind == "watt":
        return f"{value}{rng.choice(['W', 'w', ' W', ' watt'])}"
    if kind == "length":
        metres = float(value)  # type: ignore[arg-type]
        return rng.choice(
            [f"{_format_number(value)}m", f"{_format_number(value)} m", f"{int(metres * 100)}cm", f"{metres:g} meter"]
        )
    if kind == "mah":
        mah = int(value)  # type: ignore[call-overload]
        return rng.choice([f"{mah}mAh", f"{mah} mah", f"{mah // 1000}k", f"{mah:,}mAh".replace(",", ".")])
    if kind == "case":
        return f"{value}{rng.choice(['mm', ' mm', 'MM'])}"
    if kind == "layout":
        return rng.choice(_LAYOUT_WORDS[str(value)])
    return str(value)


class _OfferWriter:
    """Writes offers for one split from its own random stream; knows the catalog to find every matching product."""

    # Probabilities that shape the offers (tuned so that an off-the-shelf encoder gets P@1 around 0.5).
    p_drop_attribute = 0.1
    p_drop_brand = 0.2
    p_drop_type = 0.2
    p_shuffle = 0.35
    p_typo_word = 0.1
    p_bundle = 0.06

    def __init__(self, products: tuple[Product, ...], rng: random.Random) -> None:
        self.products = products
        self.rng = rng
        self.families: dict[tuple[str, str, str], list[Product]] = {}
        self.brand_types: dict[tuple[str, str], list[Product]] = {}
        for product in products:
            self.families.setdefault(product.family, []).append(product)
            self.brand_types.setdefault((product.type, product.brand), []).append(product)
        self.accessories = [p for p in products if _TYPES[p.type].accessory]

    def _describe(self, product: Product, language: str, full: bool) -> tuple[list[str], list[int]]:
        """Words for ``product`` and the indices of every product those words fit (variants left unstated)."""
        rng = self.rng
        spec = _TYPES[product.type]
        stated = [(kind, value) for kind, value in product.attributes if full or rng.random() >= self.p_drop_attribute]
        matching = [
            other.index for other in self.families[product.family] if all(pair in other.attributes for pair in stated)
        ]
        parts: list[str] = []
        if rng.random() >= self.p_drop_brand:
            parts.append(product.brand)
        parts.append(_model_text(rng, product.model))
        middle = [_attribute_text(rng, kind, value, language) for kind, value in stated]
        if rng.random() >= self.p_drop_type:
            words = spec.words[language] if rng.random() < 0.85 else spec.words["en"]
            middle.insert(rng.randrange(len(middle) + 1) if rng.random() < 0.5 else 0, rng.choice(words))
        if rng.random() < 0.3:
            middle.insert(rng.randrange(len(middle) + 1), rng.choice(spec.extras))
        if rng.random() < self.p_shuffle:
            rng.shuffle(middle)
        if product.type == "laptop" and len(stated) == 2 and rng.random() < 0.3:
            middle = [w for w in middle if not re.match(r"^\d", w)] + [
                f"{dict(stated)['ram']}/{dict(stated)['storage']}"
            ]
        return parts + middle, matching

    def offer(self, product: Product) -> tuple[str, list[int]]:
        rng = self.rng
        language = rng.choices(("en", "de", "es"), weights=(0.6, 0.25, 0.15))[0]
        words, positives = self._describe(product, language, full=False)
        if rng.random() < self.p_bundle and self.accessories:
            accessory = rng.choice(self.accessories)
            if accessory.type != product.type:
                extra, extra_positives = self._describe(accessory, language, full=True)
                words += [rng.choice(_BUNDLE_WORDS[language]), *extra]
                positives += [i for i in extra_positives if i not in positives]
        if rng.random() < 0.35:
            words.append(rng.choice(_EXTRAS[language]))
        if rng.random() < 0.15:
            code = rng.choice(["SKU-{:05d}", "#{:X}", "[{:06d}]", "Art.-Nr. {:07d}", "EAN 40{:011d}"])
            words.insert(
                0 if rng.random() < 0.3 else len(words), code.format(rng.randrange(10**5 if "X" not in code else 16**4))
            )
        text = " ".join(words)
        text = " ".join(_typo(rng, w) if rng.random() < self.p_typo_word else w for w in text.split())
        casing = rng.random()
        if casing < 0.45:
            text = text.lower()
        elif casing < 0.55:
            text = text.upper()
        return text, sorted(positives)

    def negatives(self, positives: list[int]) -> list[int]:
        """1-5 products of the same brand and type as a positive, preferring same-model and neighbouring models."""
        rng = self.rng
        positive_set = set(positives)
        candidates: list[Product] = []
        seen: set[int] = set()
        for index in positives:
            anchor = self.products[index]
            for other in self.brand_types[(anchor.type, anchor.brand)]:
                if other.index not in positive_set and other.index not in seen:
                    seen.add(other.index)
                    candidates.append(other)
        if not candidates:
            return []
        anchors = [self.products[i] for i in positives]

        def weight(other: Product) -> float:
            closest = min(
                abs(other.model_rank - a.model_rank) for a in anchors if (a.type, a.brand) == (other.type, other.brand)
            )
            return 4.0 if closest == 0 else 2.0 if closest == 1 else 1.0

        count = min(len(candidates), rng.randint(1, 5))
        weights = [weight(c) for c in candidates]
        picked: list[int] = []
        for _ in range(count):
            (choice,) = rng.choices(range(len(candidates)), weights=weights)
            picked.append(candidates[choice].index)
            weights[choice] = 0.0
        return sorted(picked)


@lru_cache(maxsize=16)
def _split_offers(
    seed: int, num_products: int, split: str
) -> tuple[tuple[str, ...], tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]]:
    products = _catalog(seed, num_products)
    used: set[str] = set()
    for earlier in _GENERATION_ORDER[: _GENERATION_ORDER.index(split)]:
        used.update(normalise_text(text) for text in _split_offers(seed, num_products, earlier)[0])
    rng = random.Random(f"alc_hf.catalog:{seed}:{_STREAM[split]}")
    writer = _OfferWriter(products, rng)
    target = max(1, round(SPLIT_RATES[split] * num_products))
    queries: list[str] = []
    positives: list[tuple[int, ...]] = []
    negatives: list[tuple[int, ...]] = []
    attempts = 0
    while len(queries) < target:
        attempts += 1
        if attempts > 50 * target:
            raise RuntimeError(f"could not write {target} distinct offers for split {split!r}")
        text, pos = writer.offer(rng.choice(products))
        key = normalise_text(text)
        if key in used:
            continue
        used.add(key)
        queries.append(text)
        positives.append(tuple(pos))
        negatives.append(tuple(writer.negatives(pos)))
    return tuple(queries), tuple(positives), tuple(negatives)


def builtin_catalog(seed: int = 0, split: str = "trn", num_products: int = 3000) -> QueryLabelData:
    """The synthetic catalog as ``QueryLabelData``: offers (queries) of ``split`` against the catalog titles (labels).

    Deterministic for ``(seed, split, num_products)``; the labels are the same for every split. ``split`` is one of
    ``"trn"`` (~2 offers per product), ``"val"`` (~0.25) or ``"tst"`` (~0.3); the splits never share an offer text.
    ``negatives`` holds 1-5 products of the same brand and type per query that are not among its positives.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(repr(s) for s in SPLITS)}, got {split!r}")
    products = _catalog(seed, num_products)
    queries, positives, negatives = _split_offers(seed, num_products, split)
    return QueryLabelData(
        queries=list(queries),
        labels=[product.title for product in products],
        positives=RaggedIds.from_lists(positives),
        filter_pairs=np.zeros((0, 2), dtype=np.int64),
        negatives=RaggedIds.from_lists(negatives),
        source=f"builtin_catalog(seed={seed}, split={split})",
    )
