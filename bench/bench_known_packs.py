"""Wrong charges with a measured misplaced pack, in visits that follow the decoder's own model.

Run from the repository root:

    .venv/bin/python bench/bench_known_packs.py --visits 40000

A 250 g tea lies among 80 g pear crisps, and the decoder has measured its
weight to the standard deviation it reports after a certain decoding (1.4 or
1.95 g). Each visit takes one to a few packs: the tea from its own shelf, a
crisp, or the misplaced tea. Pack weights spread normally with the tolerance
at three standard deviations, and each weight change gets Gaussian noise, by
default at the full noise band that the decoder assumes. Every visit is
decoded twice, with the tea's label weight only and with its measured weight,
and both results are compared with the truth. bench/bench_decoding.py cannot
show these risks, because the simulator's weighing error is about a fifth of
the decoder's noise band and its students rarely take several crisps at once.
"""

import argparse
import platform
import random
import time
from collections import Counter

from kiosk_agent import decoding
from kiosk_agent.decoding import (
    DEFAULT_NOISE_BAND_MG,
    ItemDecoder,
    KnownPack,
    ProductWeight,
)

TEA = ProductWeight("tea", 250_000, 25_000)
CRISPS = ProductWeight("crisps", 80_000, 8_000)
HOMES = {"tea": [0], "crisps": [1]}
STOCK = {0: {"tea": 19}, 1: {"crisps": 20, "tea": 1}}
# Standard deviations the decoder reports for a tea it measured: moved alone
# from its own shelf, or put down while other packs changed.
MEASURED_SIGMAS_MG = (1_400.0, 1_950.0)


def _draw(rng: random.Random, product: ProductWeight) -> int:
    deviation = max(-3.0, min(3.0, rng.gauss(0, 1))) * product.tolerance_mg / 3
    return round(product.unit_weight_mg + deviation)


def run(
    seed: int, visits: int, *, max_picks: int, crisps_share: float, noise_mg: float
) -> Counter[str]:
    rng = random.Random(seed)
    decoder = ItemDecoder([TEA, CRISPS])
    tally: Counter[str] = Counter()
    for _ in range(visits):
        tea_mg = _draw(rng, TEA)
        sigma_mg = rng.choice(MEASURED_SIGMAS_MG)
        known = {1: [KnownPack("tea", round(tea_mg + rng.gauss(0, sigma_mg)), sigma_mg)]}
        deltas = {0: 0, 1: 0}
        truth: Counter[str] = Counter()
        choices = {(0, "tea"): 1.0, (1, "crisps"): crisps_share, (1, "misplaced tea"): 1.0}
        for _ in range(rng.randint(1, max_picks)):
            shelf, pick = rng.choices(list(choices), list(choices.values()))[0]
            if pick == "misplaced tea":
                deltas[1] -= tea_mg
                del choices[(shelf, pick)]
            else:
                deltas[shelf] -= _draw(rng, TEA if pick == "tea" else CRISPS)
            truth["crisps" if pick == "crisps" else "tea"] += 1
        for shelf in deltas:
            deltas[shelf] += round(rng.gauss(0, noise_mg))

        for name, packs in (("label", None), ("measured", known)):
            result = decoder.decode(STOCK, deltas, home_shelves=HOMES, known_packs=packs)
            charged = Counter(dict(result.charged))
            tally[f"{name} settled"] += result.certain
            overcharged = any(charged[p] > truth[p] for p in charged)
            tally[f"{name} wrong"] += overcharged or (result.certain and charged != truth)
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visits", type=int, default=40_000, help="visits to simulate")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    parser.add_argument("--max-picks", type=int, default=3, help="maximum packs a visit takes")
    parser.add_argument(
        "--crisps-share",
        type=float,
        default=1.0,
        help="weight of taking a crisp against taking either tea, per pick",
    )
    parser.add_argument(
        "--noise-mg",
        type=float,
        default=DEFAULT_NOISE_BAND_MG / 3,
        help="standard deviation of the error of each weight change, in mg",
    )
    parser.add_argument(
        "--odds-only",
        action="store_true",
        help="charge a known pack on odds alone, without the distance check, to show its effect",
    )
    args = parser.parse_args()
    if args.odds_only:
        decoding._known_rival_ruled_out = lambda *_: True  # type: ignore[assignment]

    started = time.perf_counter()
    tally = run(
        args.seed,
        args.visits,
        max_picks=args.max_picks,
        crisps_share=args.crisps_share,
        noise_mg=args.noise_mg,
    )
    elapsed = time.perf_counter() - started
    print(f"python {platform.python_version()} on {platform.machine()}")
    print(
        f"visits: {args.visits} in {elapsed:.0f} s, seed {args.seed}, up to {args.max_picks} "
        f"packs, crisps share {args.crisps_share}, noise sd {args.noise_mg:.0f} mg"
    )
    for name in ("label", "measured"):
        settled = tally[f"{name} settled"]
        print(
            f"{name} weight: settled without review {settled} ({settled / args.visits:.2%}), "
            f"wrong charges {tally[f'{name} wrong']}"
        )


if __name__ == "__main__":
    main()
