"""The mini zoo's class embeddings: orthonormal within a task, heads at the recipe's fidelity, and under `by-name`
one direction per class name across tasks."""

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from bench.zoo.build import class_vectors
from bench.zoo.embeddings import by_name, nearest_orthonormal, per_task
from bench.zoo.recipe import RECIPES, ZooRecipe
from core.errors import BenchError
from tasks.shipped_zoo import SOURCE_ZOOS

TASKS = {"numbers": ("0", "1", "2", "3"), "digits": ("3", "2", "1", "0", "7"), "trees": ("oak", "pine", "3")}


@pytest.mark.parametrize("scheme", [per_task, by_name])
def test_each_task_s_embeddings_are_orthonormal_and_its_heads_read_them_at_the_fidelity(scheme):
    pretraining, heads = scheme(TASKS, dim=16, seed=0, fidelity=0.3)
    for task, names in TASKS.items():
        eye = torch.eye(len(names))
        torch.testing.assert_close(pretraining[task] @ pretraining[task].T, eye)
        torch.testing.assert_close(heads[task] @ heads[task].T, eye)
        torch.testing.assert_close(heads[task] @ pretraining[task].T, 0.3 * eye)  # its own class only


def test_by_name_gives_a_class_name_nearly_one_direction_in_every_task_and_per_task_does_not():
    shared, _ = by_name(TASKS, dim=64, seed=0, fidelity=0.3)
    separate, _ = per_task(TASKS, dim=64, seed=0, fidelity=0.3)
    same_set = shared["numbers"] @ shared["digits"][[3, 2, 1, 0]].T  # the same four names, in one order
    torch.testing.assert_close(same_set.diag(), torch.ones(4), atol=0.05, rtol=0)
    assert (shared["trees"][2] @ shared["numbers"][3]).item() > 0.8  # "3" among other names still leans the same way
    assert (separate["trees"][2] @ separate["numbers"][3]).abs().item() < 0.5


def test_nearest_orthonormal_rows_of_orthonormal_rows_are_themselves():
    rows = torch.linalg.qr(torch.randn(8, 5)).Q.T
    torch.testing.assert_close(nearest_orthonormal(rows), rows)


@pytest.mark.parametrize("name", ["mini-v1", "mini-v2"])
def test_each_recipe_reproduces_its_shipped_zoo_s_heads(name):
    """Up to float rounding: the last bits of by-name's SVD depend on the number of torch threads."""
    _, heads = class_vectors(RECIPES[name])
    shipped = load_file(str(SOURCE_ZOOS / name / "heads.safetensors"))
    assert shipped.keys() == set(RECIPES[name].tasks)
    for task in RECIPES[name].tasks:
        torch.testing.assert_close(heads[task], shipped[task], atol=1e-6, rtol=0)


def test_an_unknown_embedding_scheme_is_refused_naming_it():
    with pytest.raises(BenchError, match="class_embeddings 'by-colour'"):
        replace(ZooRecipe(), class_embeddings="by-colour")


@pytest.mark.parametrize("contrast", ["own-task", "all-tasks"])
def test_a_pretraining_image_competes_among_its_task_s_classes_or_every_task_s_but_same_named_ones(contrast):
    from bench.zoo.build import _pretraining_set

    tasks = ("digits", "house_numbers", "signs")  # digits and house numbers share the names "0".."9"
    recipe = replace(ZooRecipe().tiny(), tasks=tasks, pretrain_contrast=contrast, pretrain_images_per_task=20)
    _, targets, vectors, allowed = _pretraining_set(recipe, class_vectors(recipe)[0])
    assert vectors.shape[0] == allowed.shape[1] == 10 + 10 + 12
    digit_image = allowed[0]
    assert digit_image[:10].all() and not digit_image[10:20].any()  # its own "3", never house numbers' "3"
    assert digit_image[20:].all() if contrast == "all-tasks" else not digit_image[20:].any()
    assert allowed[torch.arange(len(targets)), targets].all()
