"""A few built-in product pairs: retailer offers and the catalog titles they match, with label ids.

Small enough to train on in seconds; the demo and the docs use it until the generated catalog replaces it.
"""

from __future__ import annotations

from datasets import Dataset

# (offer as a shop writes it, catalog title, catalog id); several offers per product, and near-miss products
# (same brand and type, another model) so that the in-batch negatives are hard.
PRODUCT_PAIRS: list[tuple[str, str, int]] = [
    ("sony wh1000xm5 wireless noise cancelling headphones black", "Sony WH-1000XM5 Wireless Headphones, Black", 0),
    ("SONY WH-1000XM5/B over-ear bluetooth", "Sony WH-1000XM5 Wireless Headphones, Black", 0),
    ("sony wh-1000xm4 headphones black", "Sony WH-1000XM4 Wireless Headphones, Black", 1),
    ("Sony WH1000XM4 kopfhörer schwarz", "Sony WH-1000XM4 Wireless Headphones, Black", 1),
    ("apple iphone 15 128gb blue unlocked", "Apple iPhone 15, 128 GB, Blue", 2),
    ("iPhone 15 128 GB blau", "Apple iPhone 15, 128 GB, Blue", 2),
    ("apple iphone 15 pro 256gb natural titanium", "Apple iPhone 15 Pro, 256 GB, Natural Titanium", 3),
    ("apple iphone 14 128gb midnight", "Apple iPhone 14, 128 GB, Midnight", 4),
    ("samsung galaxy s24 ultra 512gb titanium black", "Samsung Galaxy S24 Ultra, 512 GB, Titanium Black", 5),
    ("Galaxy S24 Ultra SM-S928B 512GB schwarz", "Samsung Galaxy S24 Ultra, 512 GB, Titanium Black", 5),
    ("samsung galaxy s24 256gb onyx black", "Samsung Galaxy S24, 256 GB, Onyx Black", 6),
    ("samsung galaxy s23 256gb phantom black", "Samsung Galaxy S23, 256 GB, Phantom Black", 7),
    ("dell xps 13 9340 core ultra 7 16gb 512gb", "Dell XPS 13 9340 Laptop, Intel Core Ultra 7, 16 GB, 512 GB SSD", 8),
    ("DELL XPS13 9340 i7 16/512", "Dell XPS 13 9340 Laptop, Intel Core Ultra 7, 16 GB, 512 GB SSD", 8),
    ("dell xps 15 9530 i7 32gb 1tb", "Dell XPS 15 9530 Laptop, Intel Core i7, 32 GB, 1 TB SSD", 9),
    ("lenovo thinkpad x1 carbon gen 11 i7 16gb", "Lenovo ThinkPad X1 Carbon Gen 11, Core i7, 16 GB", 10),
    ("thinkpad x1 carbon g12 ultra 7 32gb", "Lenovo ThinkPad X1 Carbon Gen 12, Core Ultra 7, 32 GB", 11),
    ("logitech mx master 3s graphite", "Logitech MX Master 3S Wireless Mouse, Graphite", 12),
    ("Logitech MX Master 3S maus grafit", "Logitech MX Master 3S Wireless Mouse, Graphite", 12),
    ("logitech mx master 3 mid grey", "Logitech MX Master 3 Wireless Mouse, Mid Grey", 13),
    ("anker usb c cable 2m 100w braided", "Anker USB-C to USB-C Cable, 100 W, 2 m, Braided", 14),
    ("anker usb-c kabel 1m 60w", "Anker USB-C to USB-C Cable, 60 W, 1 m", 15),
    ("samsung 990 pro 2tb nvme ssd", "Samsung 990 PRO NVMe SSD, 2 TB", 16),
    ("Samsung 990 PRO MZ-V9P2T0BW 2 TB", "Samsung 990 PRO NVMe SSD, 2 TB", 16),
    ("samsung 980 pro 1tb nvme", "Samsung 980 PRO NVMe SSD, 1 TB", 17),
    ("bose quietcomfort 45 white smoke", "Bose QuietComfort 45 Headphones, White Smoke", 18),
    ("bose qc ultra headphones black", "Bose QuietComfort Ultra Headphones, Black", 19),
    ("lg oled55c3 55 inch 4k oled tv", 'LG OLED55C3 55" 4K OLED evo TV', 20),
    ("LG OLED65C3 65 zoll", 'LG OLED65C3 65" 4K OLED evo TV', 21),
    ("canon eos r6 mark ii body", "Canon EOS R6 Mark II Mirrorless Camera, Body Only", 22),
    ("canon eos r8 body only", "Canon EOS R8 Mirrorless Camera, Body Only", 23),
    ("nintendo switch oled white joy-con", "Nintendo Switch OLED Model, White Joy-Con", 24),
]


def product_pairs() -> Dataset:
    """The built-in pairs as training rows: ``anchor`` (offer), ``positive`` (catalog title), ``label`` ([id])."""
    return Dataset.from_dict(
        {
            "anchor": [offer for offer, _, _ in PRODUCT_PAIRS],
            "positive": [title for _, title, _ in PRODUCT_PAIRS],
            "label": [[label_id] for _, _, label_id in PRODUCT_PAIRS],
        }
    )
