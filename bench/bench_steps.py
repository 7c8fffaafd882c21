"""Per-pick weight steps: whether the agent could see them, and what they could settle at best.

Run from the repository root:

    .venv/bin/python bench/bench_steps.py --sessions 10000 --fix-after 10
    .venv/bin/python bench/bench_steps.py --plateaus --sessions 2000

A shelf that settles between two picks shows each pick as its own weight step,
and a step decodes among far fewer candidates than the visit's net change. The
default mode bounds what that could gain. It replays the sessions of
bench/bench_decoding.py and decodes each one again as if every pick and every
pack put back were seen as a clean step of its own, from the true stock before
that pick. Each step gets 0.4 g of Gaussian noise, the simulator's error of a
settled weight change. A session counts as settled if the net change or the steps
decode with certainty, and steps take precedence when both do.

``--plateaus`` measures whether those steps exist. It samples the shelves every
0.1 s while the door is open and runs the agent's stability detector
(``kiosk_agent.weighing.ShelfWindow``) on the readings. Then it counts, on each
shelf, the stable levels between the weight before the visit and the weight after
it that differ by at least ``LEVEL_STEP_MG``.
"""

import argparse
import multiprocessing
import platform
import random
import time
from collections import Counter

import bench_decoding as bench

from kiosk_agent.decoding import Decoding, ItemDecoder
from kiosk_agent.weighing import ShelfWindow
from simulator.students import StudentBehaviour, visit

# Standard deviation of the error of one ideal step: that of a settled weight
# change in the simulator, with 1 g ADC noise and the board's 0.5 s window.
STEP_NOISE_MG = 400
# Two stable levels of a shelf count as different ones at this distance, a
# quarter of the lightest pack.
LEVEL_STEP_MG = 20_000
# Sampling continues this long after the door closes, longer than the swing.
AFTER_CLOSE_S = 4.0


def _home_shelf(product_id: str, layout: str) -> int:
    return next(i for i, p in enumerate(bench.LAYOUTS[layout]) if p.product_id == product_id)


def decode_ideal_steps(
    record: bench.SessionRecord, decoder: ItemDecoder, rng: random.Random
) -> Decoding | None:
    """Decode a session with every pick as a step of its own; None if nothing moved.

    Each step becomes a shelf of its own with the stock that lay on the real
    shelf just before it, so the decoder's rule that no product is put back
    more often than it was taken spans the whole visit.
    """
    picks = [(e.shelf, -e.item.weight_mg, e.item.product_id) for e in record.visit.taken]
    picks += [(e.shelf, e.item.weight_mg, e.item.product_id) for e in record.visit.returned]
    if not picks:
        return None
    on_shelf = {shelf: dict(products) for shelf, products in record.stock.items()}
    stock: dict[int, dict[str, int]] = {}
    deltas: dict[int, int] = {}
    known = {}
    for step, (shelf, change_mg, product) in enumerate(picks):
        stock[step] = dict(on_shelf.get(shelf, {}))
        deltas[step] = change_mg + round(rng.gauss(0, STEP_NOISE_MG))
        if shelf in record.known_packs:
            # The decoder ignores a known pack that the step's stock no longer counts.
            known[step] = record.known_packs[shelf]
        counts = on_shelf.setdefault(shelf, {})
        counts[product] = counts.get(product, 0) + (1 if change_mg > 0 else -1)
    return decoder.decode(stock, deltas, known_packs=known)


def ideal_steps(seed: int, sessions: int, fix_after: int, layout: str) -> Counter[str]:
    """Run bench_decoding's sessions and tally the net and the ideal-step decodings."""
    decoder = ItemDecoder(bench._weights(layout))
    rng = random.Random(seed + 1_000_003)
    tally: Counter[str] = Counter()

    def observe(record: bench.SessionRecord) -> None:
        truth = Counter(item.product_id for item in record.visit.kept)
        net = record.decoding
        steps = decode_ideal_steps(record, decoder, rng)
        steps_certain = steps is not None and steps.certain
        tally["sessions"] += 1
        tally["sessions with picks"] += steps is not None
        tally["net certain"] += net.certain
        tally["steps certain"] += steps_certain
        chosen = steps if steps is not None and steps_certain else net
        tally["settled"] += chosen.certain
        charged = Counter(dict(chosen.charged))
        if any(charged[p] > truth[p] for p in charged) or (chosen.certain and charged != truth):
            tally["wrong charges"] += 1
        if net.certain and steps_certain and dict(net.charged) != dict(steps.charged):
            tally["net and steps disagree"] += 1
        if not net.certain and steps_certain:
            tally["settled by steps only"] += 1
        if not chosen.certain:
            took_misplaced = any(
                _home_shelf(e.item.product_id, layout) != e.shelf for e in record.visit.taken
            )
            tally["review, a pick took a misplaced pack"] += took_misplaced

    bench.run(seed, sessions, fix_after, observe, layout=layout)
    return tally


def plateaus(
    seed: int, sessions: int, pause_s: tuple[float, float], settle_s: float, layout: str
) -> Counter:
    """Count, per shelf touched in a visit, its picks against the stable steps seen."""
    rng = random.Random(seed)
    rig = bench.Rig(seed, settle_s, layout)
    behaviour = StudentBehaviour(
        pause_s=pause_s,
        leave_open_p=bench.BEHAVIOUR.leave_open_p,
        leave_open_s=bench.BEHAVIOUR.leave_open_s,
    )
    clock = rig.clock
    windows: dict[int, ShelfWindow] = {}
    levels: dict[int, list[int]] = {}

    def sample_until(end: float) -> None:
        while clock.now() + bench.SAMPLE_S <= end:
            clock.advance(bench.SAMPLE_S)
            now = clock.now()
            with rig.cabinet.lock:
                rig.cabinet.board.update(now)
                readings = [channel.reading() for channel in rig.cabinet.board.channels]
            for shelf, reading in enumerate(readings):
                window = windows.setdefault(shelf, ShelfWindow())
                window.add(now, reading.weight_mg, bool(reading.status & 1))
                weight = window.stable_weight(now)
                seen = levels.setdefault(shelf, [])
                if weight is not None and (not seen or abs(weight - seen[-1]) >= LEVEL_STEP_MG):
                    seen.append(weight)
        clock.advance(max(0.0, end - clock.now()))

    # The student's pauses become spells in which the agent samples the shelves.
    clock.sleep = lambda seconds: sample_until(clock.now() + seconds)  # type: ignore[method-assign]
    tally: Counter = Counter()
    for number in range(sessions):
        clock.advance(rng.uniform(30.0, 600.0))
        windows.clear()
        levels.clear()
        for shelf, weight in rig.stable_weights().items():
            levels[shelf] = [weight]
        door = rng.randrange(2)
        rig.unlock(door, token=number + 1)
        result = visit(rig.cabinet, door, f"student-{number}", rng, behaviour)
        sample_until(clock.now() + AFTER_CLOSE_S)
        picks = Counter(e.shelf for e in result.taken) + Counter(e.shelf for e in result.returned)
        for shelf, count in picks.items():
            tally[(count, len(levels.get(shelf, [])) - 1)] += 1
        if (number + 1) % bench.RESTOCK_EVERY == 0:
            bench._restock(rig.cabinet, layout)
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bench.add_session_arguments(parser)
    parser.add_argument(
        "--plateaus", action="store_true", help="count the steps the agent could see instead"
    )
    parser.add_argument(
        "--pause-s",
        type=float,
        nargs=2,
        default=bench.BEHAVIOUR.pause_s,
        metavar=("MIN", "MAX"),
        help="with --plateaus: the students' pause between picks, in seconds",
    )
    parser.add_argument(
        "--settle-s",
        type=float,
        default=bench.SETTLE_S,
        help="with --plateaus: how long a shelf swings after a hand leaves it, in seconds",
    )
    args = parser.parse_args()

    share = bench.split_sessions(args.sessions, args.workers)
    seeds = [args.seed + i for i in range(args.workers)]
    work = list(zip(seeds, share, strict=True))
    started = time.perf_counter()
    with multiprocessing.Pool(args.workers) as pool:
        if args.plateaus:
            options = (tuple(args.pause_s), args.settle_s, args.layout)
            parts = pool.starmap(plateaus, [(seed, n, *options) for seed, n in work])
        else:
            options = (args.fix_after, args.layout)
            parts = pool.starmap(ideal_steps, [(seed, n, *options) for seed, n in work])
    elapsed = time.perf_counter() - started
    total: Counter = sum(parts, Counter())

    print(f"python {platform.python_version()} on {platform.machine()}, {args.workers} workers")
    print(f"sessions: {args.sessions} in {elapsed:.0f} s, seeds {seeds}, layout {args.layout}")
    if args.plateaus:
        low, high = args.pause_s
        print(f"pause between picks {low}..{high} s, swing {args.settle_s} s")
        print("picks on a shelf in one visit: shelves by the number of stable steps seen")
        for picks in sorted({count for count, _ in total}):
            row = {seen: n for (count, seen), n in sorted(total.items()) if count == picks}
            print(f"  {picks}: {row}")
        return
    sessions = total["sessions"]
    print(f"fix after {args.fix_after} visits")
    print(f"net change certain: {total['net certain']} ({total['net certain'] / sessions:.2%})")
    print(
        f"ideal steps certain: {total['steps certain']} "
        f"of {total['sessions with picks']} sessions with picks"
    )
    print(f"settled by ideal steps only: {total['settled by steps only']}")
    print(f"settled either way: {total['settled']} ({total['settled'] / sessions:.2%})")
    print(f"wrong charges: {total['wrong charges']}")
    print(f"certain both ways but charged differently: {total['net and steps disagree']}")
    reviews = sessions - total["settled"]
    print(
        f"still in review: {reviews}, where a pick took a misplaced pack: "
        f"{total['review, a pick took a misplaced pack']}"
    )


if __name__ == "__main__":
    main()
