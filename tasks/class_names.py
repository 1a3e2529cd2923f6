"""The class names FusionBench's zero-shot heads use for the tasks whose hub copies name no classes, or others
(github.com/tanganke/fusion_bench, fusion_bench/tasks/clip_classification/*.py): its experts were fine-tuned
under heads built from these lists, in this order, over the datasets' integer labels.
"""

from __future__ import annotations

# flower102.py: the heads take this list over dpdl-benchmark/oxford_flowers102's labels, whatever it names them.
FLOWERS102 = (
    "pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea", "english marigold", "tiger lily",
    "moon orchid", "bird of paradise", "monkshood", "globe thistle", "snapdragon", "colt's foot", "king protea",
    "spear thistle", "yellow iris", "globe-flower", "purple coneflower", "peruvian lily", "balloon flower",
    "giant white arum lily", "fire lily", "pincushion flower", "fritillary", "red ginger", "grape hyacinth",
    "corn poppy", "prince of wales feathers", "stemless gentian", "artichoke", "sweet william", "carnation",
    "garden phlox", "love in the mist", "mexican aster", "alpine sea holly", "ruby-lipped cattleya", "cape flower",
    "great masterwort", "siam tulip", "lenten rose", "barbeton daisy", "daffodil", "sword lily", "poinsettia",
    "bolero deep blue", "wallflower", "marigold", "buttercup", "oxeye daisy", "common dandelion", "petunia",
    "wild pansy", "primula", "sunflower", "pelargonium", "bishop of llandaff", "gaura", "geranium", "orange dahlia",
    "pink-yellow dahlia?", "cautleya spicata", "japanese anemone", "black-eyed susan", "silverbush",
    "californian poppy", "osteospermum", "spring crocus", "bearded iris", "windflower", "tree poppy", "gazania",
    "azalea", "water lily", "rose", "thorn apple", "morning glory", "passion flower", "lotus", "toad lily",
    "anthurium", "frangipani", "clematis", "hibiscus", "columbine", "desert-rose", "tree mallow", "magnolia",
    "cyclamen", "watercress", "canna lily", "hippeastrum", "bee balm", "ball moss", "foxglove", "bougainvillea",
    "camellia", "mallow", "mexican petunia", "bromelia", "blanket flower", "trumpet creeper", "blackberry lily",
)
# pcam.py: 1aurent/PatchCamelyon's label is a bool (tumour tissue present).
PCAM = (
    "lymph node", "lymph node containing metastatic tumor tissue",
)
# fer2013.py: clip-benchmark/wds_fer2013's `cls` is a bare integer.
FER2013 = (
    "angry", "disgusted", "fearful", "happy", "neutral", "sad", "surprised",
)
# food101.py: ethz/food101 names its classes in snake_case, and lists "cheesecake" (16) before "cheese_plate"
# (as nateraw/food101's loading script, _NAMES); this list has them the other way round, so FusionBench's head
# scores label 16 by "cheese plate" prompts, and its experts learnt it so.
FOOD101 = (
    "apple pie", "baby back ribs", "baklava", "beef carpaccio", "beef tartare", "beet salad", "beignets", "bibimbap",
    "bread pudding", "breakfast burrito", "bruschetta", "caesar salad", "cannoli", "caprese salad", "carrot cake",
    "ceviche", "cheese plate", "cheesecake", "chicken curry", "chicken quesadilla", "chicken wings",
    "chocolate cake", "chocolate mousse", "churros", "clam chowder", "club sandwich", "crab cakes", "creme brulee",
    "croque madame", "cup cakes", "deviled eggs", "donuts", "dumplings", "edamame", "eggs benedict", "escargots",
    "falafel", "filet mignon", "fish and chips", "foie gras", "french fries", "french onion soup", "french toast",
    "fried calamari", "fried rice", "frozen yogurt", "garlic bread", "gnocchi", "greek salad",
    "grilled cheese sandwich", "grilled salmon", "guacamole", "gyoza", "hamburger", "hot and sour soup", "hot dog",
    "huevos rancheros", "hummus", "ice cream", "lasagna", "lobster bisque", "lobster roll sandwich",
    "macaroni and cheese", "macarons", "miso soup", "mussels", "nachos", "omelette", "onion rings", "oysters",
    "pad thai", "paella", "pancakes", "panna cotta", "peking duck", "pho", "pizza", "pork chop", "poutine",
    "prime rib", "pulled pork sandwich", "ramen", "ravioli", "red velvet cake", "risotto", "samosa", "sashimi",
    "scallops", "seaweed salad", "shrimp and grits", "spaghetti bolognese", "spaghetti carbonara", "spring rolls",
    "steak", "strawberry shortcake", "sushi", "tacos", "takoyaki", "tiramisu", "tuna tartare", "waffles",
)
