"""Item decoding: from shelf weight changes to counts of products taken.

Model. One pack of product p weighs its label weight ``w_p`` give or take at
most its tolerance ``t_p``, which is three standard deviations of the pack
weight (``PACK_SIGMAS_PER_TOLERANCE``), and the error of a weight change has a standard
deviation of a third of ``noise_band_mg``. Taking ``n_p`` packs of each product from a shelf changes
its reading by ``-sum(n_p * w_p)``. The packs' deviations and the noise add in
quadrature, so each candidate explanation has a standard deviation; the packs'
part is also bounded by ``sum(n_p * t_p)``, which matters for many packs. A
candidate's half-width at ``z`` is the smaller of ``z`` standard deviations and
that bound plus ``z`` standard deviations of noise; it explains every change
within its half-width at ``Z_DECODE``.

Decodable planogram. On every shelf, all ways to take up to ``max_items``
packs of the shelf's products must stay apart at ``Z_CHECK``, wider than
``Z_DECODE``: a reading must stray more than five standard deviations before
another candidate explains it, and before that it is only unexplained (sent
to review), never read as something else. ``check_planogram`` enforces this;
the fleet server runs the same check when a planogram is saved.

Decoding a session. Per shelf, the candidates are the ways to take packs of
what the shelf holds, alone or together with one pack of any product in the
cabinet put onto that shelf (a pack put back on the wrong shelf, or on its own
shelf after being taken from another). The shelves' explanations are then
combined: a combination is valid only if no product ends up with more packs
returned than taken, since a student can only put back what they took. Each
valid combination is scored by its likelihood, times ``RETURN_PRIOR`` for each
pack it puts back. The best one is charged if it is at least ``MIN_ODDS``
times as likely as every valid combination that charges differently.
Otherwise the session goes to review, and only what every plausible
combination agrees on is charged: for each product, the smallest count. A
change that no candidate explains goes to review too, and charges are reduced
by every pack that the unexplained shelf could hide.

Returns make some planograms ambiguous that the shelf check accepts: two
100 g packs taken and a 200 g pack put back on the same shelf weigh nothing.
``check_returns`` lists such coincidences as warnings. Few real planograms
avoid them all, so decoding relies on the prior: a visit that really matches
one is charged as the plain take, or goes to review when the likelihoods say
otherwise.

Misplaced packs. A pack put back on another shelf behind the same door lies
there until the operator's round, and the next students may take it. If it
weighs about as much as a take of the shelf's own packs (one 250 g tea and
three 80 g crisps), most visits that take either go to review, and the same
weights can make a visit that puts a pack back be charged wrongly.
``check_misplaced`` estimates, for each product and each other shelf behind
its door, the share of the visits taking one such pack, or taking own packs
that weigh like it, that the decoder cannot settle. It lists the pair when
that share exceeds ``MISPLACED_REVIEW_SHARE``; the fleet server then rejects
the layout. Products that weigh like that belong behind different doors.

Known packs. A pack lying on a shelf that is not its home sits among packs of
other weights, which the planogram check does not keep apart: one 250 g tea
weighs about three 80 g crisps. When a certain decoding puts such a pack down,
``Decoding.known_packs`` returns the pack's own weight, estimated from that
shelf's change and, if the pack came from exactly one other shelf, from that
shelf's change too. The caller passes the known packs back with later
sessions. Each enters the candidates as a product of its own with one pack,
whose spread is the measurement's (about 2 g) instead of the product's, and is
charged as its product. A pack put back is never taken for a known one. Odds
alone do not protect a decision between a narrow candidate and a wide one, so
the rival must also lie far enough from the reading (see ``Z_KNOWN_RIVAL``).
A known pack that any combination within ``MIN_ODDS`` of the best takes is
left out of the known packs returned. If it is still on the shelf, the stock
counts it as a plain pack of its product.

Known weights settle only a few more sessions. Most sessions that still go to
review take a misplaced pack that weighs within about 13 g of a sum of the
shelf's own packs. The spread of that sum (5 g for three crisps), not the
pack's, decides whether charging the pack is safe.
"""

import bisect
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import lru_cache
from statistics import NormalDist

# Default three standard deviations of the error of a weight change (after
# minus before): ADC noise, residual swing and creep during one session.
DEFAULT_NOISE_BAND_MG = 6_000
# The planogram check guarantees unambiguous decoding of up to this many packs
# taken from one shelf.
DEFAULT_CHECKED_ITEMS = 4
# ``check_returns`` looks for coincidences among up to this many packs taken
# from the shelf that a pack is put back on.
RETURN_CHECKED_ITEMS = 2
# Decoding looks at most this many packs taken from one shelf, and at most
# RETURN_MAX_TAKES of them together with a pack put back on it.
MAX_DECODE_ITEMS = 12
RETURN_MAX_TAKES = 4
# A pack's tolerance spans this many standard deviations of its weight: filling
# lines spread packs roughly normally, and a tolerance is usually the bound that
# about 99.7 % of packs keep.
PACK_SIGMAS_PER_TOLERANCE = 3.0
# Standard deviations within which a candidate explains a change.
Z_DECODE = 4.0
# Candidates within this many standard deviations are scored against each
# other, so that a reading just past Z_DECODE of the truth is not handed to a
# wider, less likely candidate.
Z_WINDOW = 6.0
# Standard deviations by which the check keeps candidates apart on each side.
Z_CHECK = 4.5
# Prior odds that a visit puts a pack back on a shelf, per pack put back.
RETURN_PRIOR = 0.02
# The best combination must be this many times as likely as any that charges
# differently; combinations below best / PLAUSIBLE_ODDS are disregarded.
MIN_ODDS = 20.0
PLAUSIBLE_ODDS = 10_000.0
# A known pack's candidate is narrow: its spread is the measurement's and the
# noise's, not the product's. So odds alone do not protect a decision against
# it. A rival that takes a known pack the best combination leaves must lie
# Z_CHECK standard deviations from the reading, or a reading in the noise's
# tail would go to a wider neighbour. A best combination that takes a known
# pack must leave every rival that does not at least Z_KNOWN_RIVAL away, or the
# narrow candidate would claim the tail of other packs whose sum matches it.
# In bench/bench_known_packs.py, 2.5 charges no more wrongly than label
# weights do, and 3 gives up what known weights gain in bench/bench_decoding.py.
Z_KNOWN_RIVAL = 2.5
# ``check_misplaced`` lists a misplaced pack when the decoder could not settle more
# than this share (one in twenty) of the visits that take it, or that take own packs
# weighing like it. In bench/bench_decoding.py the two layouts it lists send 0.5 % and
# 1.2 % of all sessions to review, and the one it passes 0.03 %.
MISPLACED_REVIEW_SHARE = 0.05
# ``check_misplaced`` tries the misplaced pack taken alone or with up to this many
# of the shelf's own packs.
MISPLACED_TAKEN_WITH = 1
# Combining shelves stops, and the session goes to review, past this many
# combinations of per-shelf explanations.
MAX_COMBINATIONS = 4_096
# A known pack enters decoding as a product of its own, with one pack on its
# shelf. Its id is the product id, this separator, and the shelf and index.
# ItemDecoder rejects product ids that contain the separator.
KNOWN_PACK_SEPARATOR = "\x00"


class ReviewReason(StrEnum):
    AMBIGUOUS_WEIGHT = "ambiguous_weight"
    UNEXPLAINED_WEIGHT = "unexplained_weight"
    TOO_MANY_COMBINATIONS = "too_many_combinations"
    SCALE_FAULT = "scale_fault"


@dataclass(frozen=True, slots=True)
class ProductWeight:
    """A product's label weight per pack and the largest deviation of one pack."""

    product_id: str
    unit_weight_mg: int
    tolerance_mg: int

    def __post_init__(self) -> None:
        if self.unit_weight_mg <= 0:
            raise ValueError(f"{self.product_id}: unit weight must be positive")
        if not 0 <= self.tolerance_mg < self.unit_weight_mg:
            raise ValueError(f"{self.product_id}: tolerance must be in [0, unit weight)")


@dataclass(frozen=True, slots=True)
class KnownPack:
    """A pack lying on a shelf that is not its home, weighed when it was put there.

    ``sigma_mg`` is the standard deviation of that measurement, which is much
    smaller than the spread of the product's packs around their label weight.
    """

    product_id: str
    weight_mg: int
    sigma_mg: float

    def __post_init__(self) -> None:
        if self.weight_mg <= 0:
            raise ValueError(f"{self.product_id}: measured weight must be positive")
        if not 0 < math.ceil(PACK_SIGMAS_PER_TOLERANCE * self.sigma_mg) < self.weight_mg:
            raise ValueError(
                f"{self.product_id}: measurement sigma {self.sigma_mg} mg must be positive "
                "and less than a third of the weight"
            )


@dataclass(frozen=True, slots=True)
class Candidate:
    """One way to explain a shelf's change: packs taken (negative) or put on (positive)."""

    counts: tuple[tuple[str, int], ...]
    mean_mg: int
    sigma_mg: float
    pack_bound_mg: int
    noise_sigma_mg: float
    # A product of which one pack was taken and another put back in its place.
    swapped: str | None = None

    def half_width(self, z: float) -> float:
        return min(z * self.sigma_mg, self.pack_bound_mg + z * self.noise_sigma_mg)

    def distance(self, delta_mg: int, z: float = Z_DECODE) -> float:
        """Return how far ``delta_mg`` lies from the mean, in half-widths at ``z``."""
        return abs(delta_mg - self.mean_mg) / self.half_width(z)

    def log_likelihood(self, delta_mg: int) -> float:
        """Return the Gaussian log density of ``delta_mg``, up to a constant."""
        z = (delta_mg - self.mean_mg) / self.sigma_mg
        return -0.5 * z * z - math.log(self.sigma_mg)

    @property
    def returns(self) -> int:
        return sum(n for _, n in self.counts if n > 0) + (1 if self.swapped else 0)


@dataclass(frozen=True, slots=True)
class Conflict:
    """Two ways of taking packs from one shelf that weigh too nearly the same."""

    shelf: int
    first: tuple[tuple[str, int], ...]
    second: tuple[tuple[str, int], ...]

    def describe(self) -> str:
        def side(counts: tuple[tuple[str, int], ...]) -> str:
            return " + ".join(f"{-n} x {product}" for product, n in counts) or "nothing"

        return f"shelf {self.shelf}: {side(self.first)} weighs about as much as {side(self.second)}"


@dataclass(frozen=True, slots=True)
class MisplacedConflict:
    """A pack of ``product`` lying on ``shelf``, away from its ``home`` shelf behind the same
    door, whose take weighs too nearly like a take of the shelf's own packs.

    ``taken`` is the take with the misplaced pack (negative counts) and ``rival`` the take
    of own packs it passes for. ``review_share`` estimates the share of visits with one of
    the two takes that the decoder cannot settle.
    """

    shelf: int
    home: int
    product: str
    taken: tuple[tuple[str, int], ...]
    rival: tuple[tuple[str, int], ...]
    review_share: float

    def describe(self) -> str:
        def side(counts: tuple[tuple[str, int], ...]) -> str:
            return " + ".join(f"{-n} x {product}" for product, n in counts) or "nothing"

        return (
            f"shelf {self.shelf}: a {self.product} pack put there from shelf {self.home} "
            f"makes {side(self.taken)} weigh about as much as {side(self.rival)} "
            f"({self.review_share:.0%} of such visits to review)"
        )


@dataclass(frozen=True, slots=True)
class ShelfResult:
    shelf: int
    delta_mg: int
    explanations: tuple[Candidate, ...]


@dataclass(frozen=True, slots=True)
class Decoding:
    """Result of decoding one session: ``charged`` counts per product, and the review reasons."""

    charged: Mapping[str, int]
    review_reasons: tuple[ReviewReason, ...]
    shelves: tuple[ShelfResult, ...]
    # (product, shelf) of each pack the certain explanation puts on a shelf
    # that is not its home; empty when the session goes to review.
    misplaced: tuple[tuple[str, int], ...] = field(default=())
    # Shelf -> the explanation charged, for shelves that changed; empty when the
    # session goes to review. Known packs count as packs of their product here
    # and in ``shelves``.
    chosen: Mapping[int, Candidate] = field(default_factory=dict)
    # Shelf -> the known packs on it after the session: those given to
    # ``ItemDecoder.decode`` that no combination within MIN_ODDS of the best
    # takes, and the misplaced packs that a certain decoding puts there, as
    # measured.
    known_packs: Mapping[int, tuple[KnownPack, ...]] = field(default_factory=dict)

    @property
    def certain(self) -> bool:
        return not self.review_reasons


def _candidate(
    counts: Iterable[tuple[str, int]],
    weights: Mapping[str, ProductWeight],
    noise_band_mg: int,
    swapped: str | None = None,
) -> Candidate:
    """Build a candidate; ``swapped`` names a product of which one pack was taken and
    another put back, which leaves the count but adds two packs' deviations."""
    kept = tuple(sorted((p, n) for p, n in counts if n))
    moved = {p: abs(n) for p, n in kept}
    if swapped is not None:
        moved[swapped] = moved.get(swapped, 0) + 2
    mean = sum(n * weights[p].unit_weight_mg for p, n in kept)
    variance = sum(
        m * (weights[p].tolerance_mg / PACK_SIGMAS_PER_TOLERANCE) ** 2 for p, m in moved.items()
    )
    noise_sigma = noise_band_mg / 3
    sigma = math.sqrt(variance + noise_sigma**2)
    pack_bound = sum(m * weights[p].tolerance_mg for p, m in moved.items())
    return Candidate(kept, mean, sigma, pack_bound, noise_sigma, swapped)


def _take_combinations(
    stock: Sequence[tuple[str, int]], max_items: int
) -> Iterable[tuple[tuple[str, int], ...]]:
    """Yield every way to take at most ``max_items`` packs from ``stock``, in the order of
    ``itertools.product`` over the counts.

    Only counts within the limit are visited: eight products and four packs make 495
    takes, where the product of the ranges would have 390,625.
    """

    def takes_from(index: int, left: int) -> Iterable[tuple[tuple[str, int], ...]]:
        if index == len(stock):
            yield ()
            return
        product, count = stock[index]
        for n in range(min(count, left) + 1):
            for rest in takes_from(index + 1, left - n):
                yield ((product, -n), *rest)

    yield from takes_from(0, max_items)


def _overlaps(shelf: int, candidates: Iterable[Candidate]) -> list[Conflict]:
    """Return the pairs of candidates whose intervals at ``Z_CHECK`` overlap."""
    ordered = sorted(candidates, key=lambda c: c.mean_mg - c.half_width(Z_CHECK))

    # Sweep the intervals by their low ends; ``reach`` is the one that extends
    # furthest so far, and any interval starting before its end overlaps it.
    conflicts = []
    reach: Candidate | None = None
    for candidate in ordered:
        low = candidate.mean_mg - candidate.half_width(Z_CHECK)
        if reach is not None and low < reach.mean_mg + reach.half_width(Z_CHECK):
            conflicts.append(Conflict(shelf, reach.counts, candidate.counts))
        high = candidate.mean_mg + candidate.half_width(Z_CHECK)
        if reach is None or high > reach.mean_mg + reach.half_width(Z_CHECK):
            reach = candidate
    return conflicts


def check_shelf(
    shelf: int,
    products: Sequence[ProductWeight],
    *,
    max_items: int = DEFAULT_CHECKED_ITEMS,
    noise_band_mg: int = DEFAULT_NOISE_BAND_MG,
) -> list[Conflict]:
    """Return the pairs of ways to take up to ``max_items`` packs that cannot be told apart."""
    weights = {p.product_id: p for p in products}
    stock = [(p.product_id, max_items) for p in products]
    takes = (_candidate(c, weights, noise_band_mg) for c in _take_combinations(stock, max_items))
    return _overlaps(shelf, takes)


def check_returns(
    shelves: Mapping[int, Sequence[ProductWeight]],
    *,
    max_items: int = RETURN_CHECKED_ITEMS,
    noise_band_mg: int = DEFAULT_NOISE_BAND_MG,
) -> list[Conflict]:
    """Return the ways a pack put back on a shelf, with packs taken, could pass for a take.

    Only these coincidences can make the prior against returns charge the
    wrong product; two explanations that both put a pack back tie, and such a
    visit goes to review instead. A planogram with coincidences still decodes.
    """
    everything = {p.product_id: p for products in shelves.values() for p in products}
    conflicts: list[Conflict] = []
    for shelf, products in sorted(shelves.items()):
        stock = [(p.product_id, max_items) for p in products]
        takes = list(_take_combinations(stock, max_items))
        plain = [_candidate(take, everything, noise_band_mg) for take in takes]
        for returned in everything:
            with_return = [
                _candidate((*take, (returned, 1)), everything, noise_band_mg)
                for take in takes
                if dict(take).get(returned, 0) == 0
            ]
            for conflict in _overlaps(shelf, [*plain, *with_return]):
                if (returned, 1) in conflict.first + conflict.second and not (
                    (returned, 1) in conflict.first and (returned, 1) in conflict.second
                ):
                    conflicts.append(conflict)
    return conflicts


def check_planogram(
    shelves: Mapping[int, Sequence[ProductWeight]],
    *,
    max_items: int = DEFAULT_CHECKED_ITEMS,
    noise_band_mg: int = DEFAULT_NOISE_BAND_MG,
) -> list[Conflict]:
    """Return every conflict on every shelf; an empty list means the planogram is decodable."""
    conflicts: list[Conflict] = []
    for shelf, products in sorted(shelves.items()):
        conflicts += check_shelf(shelf, products, max_items=max_items, noise_band_mg=noise_band_mg)
    return conflicts


def check_misplaced(
    shelves: Mapping[int, Sequence[ProductWeight]],
    doors: Mapping[int, int] | None = None,
    *,
    max_items: int = DEFAULT_CHECKED_ITEMS,
    noise_band_mg: int = DEFAULT_NOISE_BAND_MG,
    limit: int | None = None,
) -> list[MisplacedConflict]:
    """Return, per shelf and product from another shelf, a misplaced pack's take that the
    decoder could not settle often enough.

    ``doors`` maps shelf to the door it is behind; without it every shelf counts as
    behind one door. A pack can be put back only on a shelf behind the door the
    student opened, so only products behind the same door are tried on each shelf.
    The misplaced pack is taken alone or with up to ``MISPLACED_TAKEN_WITH`` own
    packs, and each rival takes up to ``max_items`` own packs. A conflict is listed
    when either estimate of ``_review_shares`` exceeds ``MISPLACED_REVIEW_SHARE``.
    The search stops after ``limit`` conflicts.
    """
    if doors is not None:
        missing = sorted(set(shelves) - set(doors))
        if missing:
            raise ValueError(f"shelves {missing} have no door")
    door_of = doors if doors is not None else dict.fromkeys(shelves, 0)
    everything = {p.product_id: p for products in shelves.values() for p in products}
    # Shelves with the same products give the same result for the same misplaced product.
    found: dict[tuple[tuple[str, ...], str], tuple[Candidate, Candidate, float] | None] = {}

    conflicts: list[MisplacedConflict] = []
    for shelf, products in sorted(shelves.items()):
        own = tuple(sorted({p.product_id for p in products}))
        rivals: _Takes | None = None
        for home, home_products in sorted(shelves.items()):
            if home == shelf or door_of[home] != door_of[shelf]:
                continue
            for misplaced in home_products:
                if misplaced.product_id in own:
                    continue
                key = (own, misplaced.product_id)
                if key not in found:
                    if rivals is None:
                        rivals = _Takes(own, everything, max_items, noise_band_mg)
                    found[key] = _misplaced_take(misplaced, rivals, everything, noise_band_mg)
                worst = found[key]
                if worst is None:
                    continue
                taken, rival, share = worst
                conflicts.append(
                    MisplacedConflict(
                        shelf, home, misplaced.product_id, taken.counts, rival.counts, share
                    )
                )
                if limit is not None and len(conflicts) >= limit:
                    return conflicts
    return conflicts


class _Takes:
    """Every way to take up to ``max_items`` packs of ``products``, sorted by mean."""

    def __init__(
        self,
        products: Sequence[str],
        weights: Mapping[str, ProductWeight],
        max_items: int,
        noise_band_mg: int,
    ) -> None:
        stock = [(product, max_items) for product in products]
        self.candidates = sorted(
            (
                _candidate(take, weights, noise_band_mg)
                for take in _take_combinations(stock, max_items)
            ),
            key=lambda c: c.mean_mg,
        )
        self.means = [c.mean_mg for c in self.candidates]
        self.widest_sigma_mg = max(c.sigma_mg for c in self.candidates)
        # The takes a misplaced pack can join.
        few = [(product, MISPLACED_TAKEN_WITH) for product in products]
        self.companions = list(_take_combinations(few, MISPLACED_TAKEN_WITH))

    def near(self, mean_mg: int, reach_mg: float) -> Sequence[Candidate]:
        start = bisect.bisect_left(self.means, mean_mg - reach_mg)
        end = bisect.bisect_right(self.means, mean_mg + reach_mg)
        return self.candidates[start:end]


def _misplaced_take(
    misplaced: ProductWeight,
    rivals: _Takes,
    weights: Mapping[str, ProductWeight],
    noise_band_mg: int,
) -> tuple[Candidate, Candidate, float] | None:
    """Return a take with ``misplaced``, a rival, and their review share over
    ``MISPLACED_REVIEW_SHARE``, the pair with the fewest packs first; or None."""
    pack_sigma = misplaced.tolerance_mg / PACK_SIGMAS_PER_TOLERANCE
    worst: tuple[Candidate, Candidate, float] | None = None
    worst_packs = 0
    for own_take in rivals.companions:
        taken = _candidate((*own_take, (misplaced.product_id, -1)), weights, noise_band_mg)
        own = _candidate(own_take, weights, noise_band_mg)
        # Past this distance both estimates of ``_review_shares`` stay below the threshold.
        reach = max(
            Z_KNOWN_RIVAL * rivals.widest_sigma_mg + _MISPLACED_TAIL_Z * taken.sigma_mg,
            Z_CHECK * math.hypot(own.sigma_mg, noise_band_mg / 3)
            + _MISPLACED_TAIL_Z * math.hypot(rivals.widest_sigma_mg, pack_sigma),
        )
        for rival in rivals.near(taken.mean_mg, reach):
            share = max(_review_shares(pack_sigma, own, taken, rival, noise_band_mg))
            if share <= MISPLACED_REVIEW_SHARE:
                continue
            # The fewest packs make the plainest example for the operator.
            packs = -sum(n for _, n in taken.counts) - sum(n for _, n in rival.counts)
            if worst is None or (packs, -share) < (worst_packs, -worst[2]):
                worst, worst_packs = (taken, rival, share), packs
    return worst


# A normal lies more than this many standard deviations beyond a bound with
# probability MISPLACED_REVIEW_SHARE.
_MISPLACED_TAIL_Z = NormalDist().inv_cdf(1 - MISPLACED_REVIEW_SHARE)


def _review_shares(
    pack_sigma: float,
    own: Candidate,
    taken: Candidate,
    rival: Candidate,
    noise_band_mg: int,
) -> tuple[float, float]:
    """Estimate the shares of visits taking ``taken`` and of those taking ``rival`` that go
    to review, once the agent has measured the misplaced pack.

    ``own`` is ``taken`` without the misplaced pack. The decoder charges a measured pack
    only if every plain rival lies ``Z_KNOWN_RIVAL`` standard deviations from the
    reading, and charges a plain take only if the measured pack's candidate lies
    ``Z_CHECK`` of its narrow spread away. Which weight the misplaced pack has varies
    with its product's spread (``pack_sigma``), and the measurement's error is about
    the noise's.
    """
    gap = taken.mean_mg - rival.mean_mg
    taking_pack = _share_within(gap, taken.sigma_mg, Z_KNOWN_RIVAL * rival.sigma_mg)
    known_sigma = math.hypot(own.sigma_mg, noise_band_mg / 3)
    spread = math.hypot(rival.sigma_mg, pack_sigma)
    taking_rival = _share_within(gap, spread, Z_CHECK * known_sigma)
    return taking_pack, taking_rival


def _share_within(mean: float, sigma: float, half_width: float) -> float:
    """Return the probability that a normal of ``mean`` and ``sigma`` lies within
    ``half_width`` of zero."""
    scale = sigma * math.sqrt(2)
    return 0.5 * (math.erf((half_width - mean) / scale) - math.erf((-half_width - mean) / scale))


class ItemDecoder:
    """Decodes sessions for one cabinet's planogram; see the module docstring."""

    def __init__(
        self,
        products: Iterable[ProductWeight],
        *,
        noise_band_mg: int = DEFAULT_NOISE_BAND_MG,
        max_items: int = MAX_DECODE_ITEMS,
    ) -> None:
        self.weights = {p.product_id: p for p in products}
        if any(KNOWN_PACK_SEPARATOR in product for product in self.weights):
            raise ValueError("product ids must not contain the known-pack separator")
        self.noise_band_mg = noise_band_mg
        self.max_items = max_items
        # Keyed by the stock and the known packs' weights; bounded, so known
        # packs that come and go cannot grow it.
        self._take_table = lru_cache(maxsize=256)(self._build_take_table)

    def _build_take_table(
        self, stock: tuple[tuple[str, int], ...], known: tuple[ProductWeight, ...]
    ) -> tuple[list[int], list[Candidate], int]:
        weights = self._with_known(known)
        candidates = sorted(
            (
                _candidate(c, weights, self.noise_band_mg)
                for c in _take_combinations(stock, self.max_items)
            ),
            key=lambda c: c.mean_mg,
        )
        means = [c.mean_mg for c in candidates]
        widest = max(math.ceil(c.half_width(Z_WINDOW)) for c in candidates)
        return means, candidates, widest

    def _with_known(self, known: Iterable[ProductWeight]) -> Mapping[str, ProductWeight]:
        extra = {p.product_id: p for p in known}
        return {**self.weights, **extra} if extra else self.weights

    def explain_shelf(
        self,
        shelf_stock: Mapping[str, int],
        delta_mg: int,
        known: Sequence[ProductWeight] = (),
    ) -> list[Candidate]:
        """Return every candidate within ``Z_WINDOW`` of ``delta_mg``, nearest first.

        ``known`` lists products beyond the planogram's that ``shelf_stock`` may
        name: the known packs, which ``decode`` turns into products of their own.
        """
        stock = tuple(sorted((p, min(n, self.max_items)) for p, n in shelf_stock.items() if n > 0))
        known_key = tuple(sorted(known, key=lambda p: p.product_id))
        means, takes, widest = self._take_table(stock, known_key)
        weights = self._with_known(known_key)

        # Either nothing is put on the shelf, or one pack of any product is. A
        # pack put back is never a known one: its weight is known only once the
        # decoding is certain.
        returns: list[ProductWeight | None] = [None, *self.weights.values()]
        found: dict[tuple[tuple[tuple[str, int], ...], str | None], Candidate] = {}
        for returned in returns:
            offset = returned.unit_weight_mg if returned else 0
            # A returned pack widens the half-width at Z_WINDOW by at most this much.
            widening = max(Z_WINDOW / PACK_SIGMAS_PER_TOLERANCE, 1.0)
            slack = math.ceil(widening * returned.tolerance_mg) if returned else 0
            target = delta_mg - offset
            reach = widest + slack + 1
            start = bisect.bisect_left(means, target - reach)
            end = bisect.bisect_right(means, target + reach)
            for take in takes[start:end]:
                counts = dict(take.counts)
                swapped = None
                if returned is not None:
                    if -sum(counts.values()) > RETURN_MAX_TAKES:
                        continue
                    if counts.get(returned.product_id, 0) < 0:
                        # A pack of a product taken here put back here: the count
                        # drops by one, but two more packs' deviations count.
                        swapped = returned.product_id
                        counts[swapped] += 1
                    else:
                        counts[returned.product_id] = 1
                candidate = _candidate(counts.items(), weights, self.noise_band_mg, swapped)
                if candidate.distance(delta_mg, Z_WINDOW) <= 1:
                    found[(candidate.counts, swapped)] = candidate
        return sorted(found.values(), key=lambda c: c.distance(delta_mg))

    def decode(
        self,
        stock: Mapping[int, Mapping[str, int]],
        deltas: Mapping[int, int],
        *,
        faulted_shelves: Iterable[int] = (),
        home_shelves: Mapping[str, Iterable[int]] | None = None,
        known_packs: Mapping[int, Sequence[KnownPack]] | None = None,
    ) -> Decoding:
        """Decode one session from each shelf's stock before it and its weight change.

        ``stock`` maps shelf to product to packs on the shelf before the door
        opened, misplaced packs included. ``deltas`` maps shelf to settled weight
        after minus before, in milligrams. Shelves in ``faulted_shelves`` are
        not trusted: the session goes to review, and since a faulted shelf may
        hide any returned pack, nothing is charged.

        ``known_packs`` maps shelf to the packs on it whose weight was measured,
        as an earlier ``Decoding.known_packs`` returned them. Each is one of the
        packs that ``stock`` counts; known packs beyond that count, or of
        products not in the planogram, are ignored. A known pack is charged as
        its product.
        """
        reasons: list[ReviewReason] = []
        faulted = set(faulted_shelves)
        if faulted:
            reasons.append(ReviewReason.SCALE_FAULT)
        known = self._usable_known(stock, known_packs or {})

        results: list[ShelfResult] = []
        options: list[list[Candidate]] = []
        unexplained: list[int] = []
        for shelf in sorted(deltas):
            if shelf in faulted:
                continue
            shelf_stock, known_weights = _split_known(stock.get(shelf, {}), shelf, known)
            explanations = self.explain_shelf(shelf_stock, deltas[shelf], known_weights)
            results.append(ShelfResult(shelf, deltas[shelf], tuple(explanations)))
            if explanations:
                options.append(explanations)
            else:
                unexplained.append(shelf)
        if unexplained:
            reasons.append(ReviewReason.UNEXPLAINED_WEIGHT)

        explained = [result for result in results if result.explanations]
        combination_count = 1
        for explanations in options:
            combination_count *= len(explanations)
        if faulted or combination_count > MAX_COMBINATIONS:
            if not faulted:
                reasons.append(ReviewReason.TOO_MANY_COMBINATIONS)
            considered = {result.shelf: set(result.explanations) for result in explained}
            return Decoding(
                {},
                _unique(reasons),
                _merged_results(results),
                known_packs=_known_left(known, deltas, considered),
            )

        scored: list[tuple[float, dict[str, int], tuple[Candidate, ...]]] = []
        for combination in itertools.product(*options):
            net: dict[str, int] = {}
            for candidate in combination:
                for product, n in candidate.counts:
                    product = _product_of(product)
                    net[product] = net.get(product, 0) + n
            if all(n <= 0 for n in net.values()):
                score = sum(
                    c.log_likelihood(result.delta_mg) + c.returns * math.log(RETURN_PRIOR)
                    for c, result in zip(combination, explained, strict=True)
                )
                scored.append((score, _charge(net), combination))

        best: tuple[Candidate, ...] | None = None
        # The combinations too close to the best one to rule out: a known pack
        # stays known only if none of them takes it.
        near: list[tuple[Candidate, ...]] = []
        if not scored:
            # A pack appeared that nothing taken explains (weight from nowhere),
            # so the truth lies outside every candidate and nothing is certain.
            reasons.append(ReviewReason.UNEXPLAINED_WEIGHT)
            charged = {}
        else:
            top_score, top_charge, top = max(scored, key=lambda item: item[0])
            rival = max(
                (score for score, charge, _ in scored if charge != top_charge),
                default=-math.inf,
            )
            within = all(c.distance(r.delta_mg) <= 1 for c, r in zip(top, explained, strict=True))
            if not within:
                reasons.append(ReviewReason.UNEXPLAINED_WEIGHT)
            if (
                within
                and top_score - rival >= math.log(MIN_ODDS)
                and all(
                    _known_rival_ruled_out(top, combination, explained)
                    for _, charge, combination in scored
                    if charge != top_charge
                )
            ):
                charged, best = top_charge, top
            else:
                if within:
                    reasons.append(ReviewReason.AMBIGUOUS_WEIGHT)
                plausible = [
                    charge
                    for score, charge, _ in scored
                    if top_score - score < math.log(PLAUSIBLE_ODDS)
                ]
                charged = _least_charge(plausible)
            near = [c for score, _, c in scored if top_score - score < math.log(MIN_ODDS)]

        if unexplained:
            charged = self._discount_hidden_returns(charged, stock, deltas, unexplained)

        considered = {
            result.shelf: {combination[index] for combination in near}
            for index, result in enumerate(explained)
        }
        left = _known_left(known, deltas, considered)
        misplaced: list[tuple[str, int]] = []
        chosen: dict[int, Candidate] = {}
        if best is not None:
            homes = home_shelves or {}
            for index, (result, candidate) in enumerate(zip(explained, best, strict=True)):
                if candidate.counts:
                    chosen[result.shelf] = _merge_known(candidate)
                for product, n in candidate.counts:
                    if n > 0 and result.shelf not in set(homes.get(product, ())):
                        misplaced.append((product, result.shelf))
                        pack = self._measure(best, explained, considered, index, product)
                        if pack is not None:
                            left[result.shelf] = (*left.get(result.shelf, ()), pack)
        return Decoding(
            charged,
            _unique(reasons),
            _merged_results(results),
            tuple(misplaced),
            chosen,
            {shelf: packs for shelf, packs in sorted(left.items()) if packs},
        )

    def _usable_known(
        self,
        stock: Mapping[int, Mapping[str, int]],
        known_packs: Mapping[int, Sequence[KnownPack]],
    ) -> dict[int, tuple[KnownPack, ...]]:
        """Return the known packs that the stock counts, per shelf."""
        usable: dict[int, tuple[KnownPack, ...]] = {}
        for shelf, packs in known_packs.items():
            room = dict(stock.get(shelf, {}))
            usable_packs = []
            for pack in packs:
                if pack.product_id in self.weights and room.get(pack.product_id, 0) > 0:
                    room[pack.product_id] -= 1
                    usable_packs.append(pack)
            if usable_packs:
                usable[shelf] = tuple(usable_packs)
        return usable

    def _measure(
        self,
        best: Sequence[Candidate],
        explained: Sequence[ShelfResult],
        considered: Mapping[int, set[Candidate]],
        index: int,
        product: str,
    ) -> KnownPack | None:
        """Estimate the weight of the pack of ``product`` that ``best`` puts on shelf ``index``.

        The pack's deviation from its label weight and the rest of the
        shelf's change (the other packs' deviations and the noise) are
        independent normals, so the pack's weight given the change is normal
        too. If the pack was taken from exactly one other shelf in the same
        visit, and only plain packs of the product were, that shelf's change
        observes it as well. Returns None when a combination within MIN_ODDS of
        ``best`` explains the target shelf with other packs, or when the
        product has no tolerance. A source shelf explained in more than one way
        is left out.
        """
        weight = self.weights[product]
        if weight.tolerance_mg == 0:
            return None
        pack_variance = (weight.tolerance_mg / PACK_SIGMAS_PER_TOLERANCE) ** 2
        # Observations of the pack's weight with their variances, fused by precision.
        observations: list[tuple[float, float]] = []

        target = best[index]
        target_shelf = explained[index].shelf
        if len({c.counts for c in considered[target_shelf]}) != 1:
            return None
        observed = explained[index].delta_mg - (target.mean_mg - weight.unit_weight_mg)
        observations.append((observed, target.sigma_mg**2 - pack_variance))

        sources = [
            number
            for number, candidate in enumerate(best)
            if number != index
            and any(_product_of(p) == product and n < 0 for p, n in candidate.counts)
        ]
        if len(sources) == 1:
            source = best[sources[0]]
            source_shelf = explained[sources[0]].shelf
            plain_only = all(
                p == product for p, n in source.counts if n < 0 and _product_of(p) == product
            )
            if plain_only and len({c.counts for c in considered[source_shelf]}) == 1:
                # The source shelf lost the pack with the rest of its change.
                lost = source.mean_mg - explained[sources[0]].delta_mg
                observations.append(
                    (weight.unit_weight_mg + lost, source.sigma_mg**2 - pack_variance)
                )

        precision = 1 / pack_variance + sum(1 / variance for _, variance in observations)
        mean = (
            weight.unit_weight_mg / pack_variance
            + sum(value / variance for value, variance in observations)
        ) / precision
        return KnownPack(product, round(mean), math.sqrt(1 / precision))

    def _discount_hidden_returns(
        self,
        charged: Mapping[str, int],
        stock: Mapping[int, Mapping[str, int]],
        deltas: Mapping[int, int],
        shelves: Iterable[int],
    ) -> dict[str, int]:
        """Subtract the most packs of each product that unexplained shelves could hide.

        An unexplained shelf may hold returned packs among whatever else changed
        on it. What was put on it weighs at most its gain plus all it held before
        (everything taken off and replaced), so that bounds the hidden returns.
        """
        capacity_mg = 0
        for shelf in shelves:
            held = sum(
                n * (self.weights[p].unit_weight_mg + self.weights[p].tolerance_mg)
                for p, n in stock.get(shelf, {}).items()
                if p in self.weights
            )
            capacity_mg += max(deltas[shelf], 0) + held + self.noise_band_mg
        discounted = {}
        for product, count in charged.items():
            weight = self.weights[product]
            hidden = capacity_mg // (weight.unit_weight_mg - weight.tolerance_mg)
            if count > hidden:
                discounted[product] = count - hidden
        return discounted


def _unique(reasons: Iterable[ReviewReason]) -> tuple[ReviewReason, ...]:
    return tuple(dict.fromkeys(reasons))


def _charge(net: Mapping[str, int]) -> dict[str, int]:
    return {product: -n for product, n in sorted(net.items()) if n < 0}


def _least_charge(charges: Sequence[Mapping[str, int]]) -> dict[str, int]:
    """Return, per product, the smallest count that every explanation charges."""
    if not charges:
        return {}
    products = set().union(*charges)
    least = {p: min(charge.get(p, 0) for charge in charges) for p in sorted(products)}
    return {p: n for p, n in least.items() if n > 0}


def _known_id(pack: KnownPack, shelf: int, index: int) -> str:
    return f"{pack.product_id}{KNOWN_PACK_SEPARATOR}{shelf}.{index}"


def _product_of(product: str) -> str:
    """Return the product of a known pack's id, or ``product`` itself."""
    return product.split(KNOWN_PACK_SEPARATOR, 1)[0]


def _split_known(
    shelf_stock: Mapping[str, int], shelf: int, known: Mapping[int, tuple[KnownPack, ...]]
) -> tuple[dict[str, int], list[ProductWeight]]:
    """Return the shelf's stock with each known pack as a product of its own, and their weights.

    A known pack's tolerance is three standard deviations of its measurement,
    so it enters every candidate with the measurement's variance.
    """
    split = dict(shelf_stock)
    weights = []
    for index, pack in enumerate(known.get(shelf, ())):
        split[pack.product_id] -= 1
        product = _known_id(pack, shelf, index)
        split[product] = 1
        tolerance = math.ceil(PACK_SIGMAS_PER_TOLERANCE * pack.sigma_mg)
        weights.append(ProductWeight(product, pack.weight_mg, tolerance))
    return split, weights


def _known_left(
    known: Mapping[int, tuple[KnownPack, ...]],
    deltas: Mapping[int, int],
    considered: Mapping[int, set[Candidate]],
) -> dict[int, tuple[KnownPack, ...]]:
    """Return the known packs that no considered explanation of their shelf takes.

    ``considered`` maps each explained shelf to the explanations that the
    combinations within MIN_ODDS of the best give it.
    A shelf that changed but has no considered explanation (faulted or
    unexplained) may have lost any of its packs, so its known packs are
    dropped, and the caller counts them as plain packs again.
    """
    left: dict[int, tuple[KnownPack, ...]] = {}
    for shelf, packs in known.items():
        if shelf not in deltas:
            left[shelf] = packs
            continue
        candidates = considered.get(shelf)
        if not candidates:
            continue
        taken_ids = {
            product
            for candidate in candidates
            for product, n in candidate.counts
            if n < 0 and KNOWN_PACK_SEPARATOR in product
        }
        left[shelf] = tuple(
            pack
            for index, pack in enumerate(packs)
            if _known_id(pack, shelf, index) not in taken_ids
        )
    return left


def _known_rival_ruled_out(
    best: Sequence[Candidate], rival: Sequence[Candidate], explained: Sequence[ShelfResult]
) -> bool:
    """Return whether ``rival`` lies far enough from the readings for ``best`` to be charged.

    Only rivals that differ from ``best`` in a known pack taken are checked, and
    only on the shelves where they differ; see ``Z_KNOWN_RIVAL``. Rivals that put
    back more packs than ``best`` are left to the return prior.
    """
    if sum(c.returns for c in rival) > sum(c.returns for c in best):
        return True
    rival_takes_known = best_takes_known = False
    squared = 0.0
    for ours, theirs, result in zip(best, rival, explained, strict=True):
        if ours.counts == theirs.counts:
            continue
        ours_known = _known_taken(ours)
        theirs_known = _known_taken(theirs)
        rival_takes_known = rival_takes_known or bool(theirs_known - ours_known)
        best_takes_known = best_takes_known or bool(ours_known - theirs_known)
        squared += ((result.delta_mg - theirs.mean_mg) / theirs.sigma_mg) ** 2
    if rival_takes_known:
        return squared >= Z_CHECK**2
    if best_takes_known:
        return squared >= Z_KNOWN_RIVAL**2
    return True


def _known_taken(candidate: Candidate) -> set[str]:
    return {p for p, n in candidate.counts if n < 0 and KNOWN_PACK_SEPARATOR in p}


def _merge_known(candidate: Candidate) -> Candidate:
    """Return ``candidate`` with known packs counted as packs of their product."""
    if not any(KNOWN_PACK_SEPARATOR in product for product, _ in candidate.counts):
        return candidate
    merged: dict[str, int] = {}
    for product, n in candidate.counts:
        merged[_product_of(product)] = merged.get(_product_of(product), 0) + n
    return replace(candidate, counts=tuple(sorted((p, n) for p, n in merged.items() if n)))


def _merged_results(results: Iterable[ShelfResult]) -> tuple[ShelfResult, ...]:
    return tuple(
        replace(result, explanations=tuple(_merge_known(c) for c in result.explanations))
        for result in results
    )
