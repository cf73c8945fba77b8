"""The paper's comparison grid on ytf68: train every config, score it on TEST, write the page.

Each run trains with the `Trainer` into ``OUT/<run-name>/`` with resume semantics (finished runs
are skipped, partial ones continue from ``last.pt``), so the grid can be continued across
sessions. The best epoch is chosen on the validation split (``trainval-train`` / ``val``, split
by identity); only that ``best.pt`` is scored on the ytf68 TEST split (5-point crops, image
pixels), so no hyperparameter is chosen on test. `write_results` renders the page.

Full grid (``width`` 1/4, ``seeds`` seeds, 200 epochs unless ``--epochs``):
- Table 2 analogue: softargmax / LaplaceKL / GaussianKL, each with N in {0 (no D), 1000, 2500, all}
  unlabelled faces. N at or above the pool's size is "all" (run once, labelled as such).
- Table 3 analogue: widths 1/16 ... 1 for softargmax, LaplaceKL, LaplaceKL + D(all).
- Fig. 4 analogue: LaplaceKL's target scale b_t in {0.5, 1, 2, 4} px.
The quick grid (``--quick``) is one seed, width 1/8, 3 epochs and 256 training faces, with a
discriminator of base width 16 fed 16 unlabelled faces per step (recipes: 64 and 32): a smoke
run of the whole pipeline, not a result.

Unlabelled pool: ``<data root>/unlabeled/ytf`` (1,081 clean frames of ytf68 training identities;
about 1,050 have a dlib detection). ``unlabeled/lfw`` is avoided: its images carry a drawn green
box and landmark dots, a trivial cue for the discriminator.
"""

from laplace_landmarks.reproduce.grid import (
    GridOptions,
    build_grid,
    resolve_options,
    run_grid,
)
from laplace_landmarks.reproduce.report import (
    BEGIN,
    END,
    QUICK_BEGIN,
    QUICK_END,
    replace_section,
    write_results,
)

__all__ = [
    "BEGIN",
    "END",
    "QUICK_BEGIN",
    "QUICK_END",
    "GridOptions",
    "build_grid",
    "replace_section",
    "resolve_options",
    "run_grid",
    "write_results",
]
