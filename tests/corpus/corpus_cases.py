"""A seeded corpus of malformed inputs for every entry point, generated at test time.

Each Case says which tool runs (corpus_runner's names), how to make its inputs in a fresh folder
(`build(d)` writes them and returns argv), what the output must name (the file, and the layer or
the line), which outputs must not appear, and which files that were there before must stay as
they were. cases() is deterministic for a seed: the same ids and the same files every run. The
damage itself comes from random.Random(seed): which layer a mutation hits, which bad value
(0 or negative), where a file is cut, which bytes are garbage.

Families: prototxt (geometry, structure, fillers, memory, Python layers; info, Net, time,
draw_net), V1 prototxt (upgrade, info, Net), caffemodels (info, Net as model, Net weights=,
read_weights, convert_caffemodel, its --info), solvers (solve), image lists and images
(convert_imageset), databases (compute_image_mean), evaluation inputs (evaluate).
"""
import random
from dataclasses import dataclass, field

SEED = 13


@dataclass
class Case:
    id: str
    tool: str
    build: object                      # build(d) -> argv (list); writes the inputs into folder d
    expect: tuple = ()                 # strings the output must contain; "{d}" is the case's folder
    absent: tuple = ()                 # paths (relative to d) that must not exist afterwards
    keep: dict = field(default_factory=dict)   # path (relative to d) -> bytes it holds before and after
    syspath: bool = False              # put d on sys.path (Python layer modules)
    env: dict = field(default_factory=dict)


def _reseeding(build, rng, seed, cid):
    """Builds draw from the generator the cases were made with; reseeding it from the case id
    first makes each case's files the same whichever cases run, in whatever order."""
    def run(d):
        rng.seed(f"{seed}/{cid}")
        return build(d)
    return run


def cases(seed=SEED):
    from corpus_images import imageset_cases, mean_cases
    from corpus_nets import prototxt_cases, v1_cases
    from corpus_runs import evaluate_cases, solver_cases
    from corpus_weights import caffemodel_cases

    rng = random.Random(seed)
    made = (prototxt_cases(rng) + v1_cases(rng) + caffemodel_cases(rng) + solver_cases(rng)
            + imageset_cases(rng) + mean_cases(rng) + evaluate_cases(rng))
    for c in made:
        c.build = _reseeding(c.build, rng, seed, c.id)
    return made
