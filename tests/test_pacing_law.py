"""The pacing law on a virtual clock (issue 26): the headroom, the ramp, the reaction to a 429,
and never more than the minute's budget. No thread, no sleep, no timing: every figure is a
count of calls on the simulated clock of :mod:`pacing_sim` or of the limiter's own slots."""

from __future__ import annotations

import itertools
import math

import pytest
from helpers import max_in_any_window
from hypothesis import given, settings
from hypothesis import strategies as st
from pacing_sim import LIMIT, WALL0, run

from sailthru_destination.transport._adaptive import AdaptiveLimit, RecordStats, backoff_for
from sailthru_destination.transport.ratelimit import DEFAULT_HEADROOM, RateLimiter, refusal_is_burst

MINUTE_BUDGET = int(LIMIT * 60)
# The client freezes 30 ms every 2 s (a busy machine): the calls of those slots leave bunched.
STALLS = tuple((k * 2.0 + 0.3, 0.03) for k in range(70))


# -- whole runs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("latency", [0.05, 0.1, 0.2])
def test_a_long_run_against_the_minute_window_reaches_095_and_never_draws_a_429(
    latency: float,
) -> None:
    outcome = run(seconds=130, latency=latency, window=60, stalls=STALLS, start_wall=WALL0 + 17)
    assert outcome.ratio(0, 130) >= 0.95
    assert outcome.refused == 0
    # The headroom: a minute sees the pace, 2.5 % under the limit, never the limit itself.
    assert outcome.most_in_a_wall_minute() <= math.ceil(MINUTE_BUDGET * DEFAULT_HEADROOM) + 1


def test_a_20s_run_against_the_one_second_window_at_50ms_slows_down_and_reaches_095() -> None:
    stalls = tuple((k * 2.0 + 0.3, 0.05) for k in range(10))
    outcome = run(seconds=20, latency=0.05, window=1.0, stalls=stalls)
    assert outcome.refused > 0  # bunched calls did meet the window: the reaction was tested
    assert outcome.ratio(0, 20) >= 0.95
    # No second is lost to a pause until the next second (that cost up to 1 s each time).
    assert min(outcome.ratio(s, s + 1) for s in range(20)) >= 0.8


@pytest.mark.parametrize("latency", [0.05, 0.2])
def test_the_ramp_fills_the_pacers_slots_while_connections_are_set_up(latency: float) -> None:
    # Each new connection costs 100 ms: the first records take 150-300 ms.
    outcome = run(seconds=1, latency=latency, window=60, connect=0.1)
    assert outcome.ratio(0, 1) >= 0.95
    first_second = [n for t, n in outcome.in_flight if t < 0.5]
    assert max(first_second) >= LIMIT * (latency + 0.1)  # Little's law, with the set-up


def test_the_ramp_starts_wide_and_the_estimate_comes_down_once_connections_are_reused() -> None:
    limit = AdaptiveLimit()
    assert limit.current == limit.maximum  # nothing measured yet: never starve the pacer
    for service in [0.15] * 30 + [0.05] * 300:  # set-up paid by the first, then reused
        stats = RecordStats(pace=LIMIT * DEFAULT_HEADROOM)
        limit.finish(stats, service)
        # Never under what the pacer needs for the service time of the moment.
        assert limit.current >= LIMIT * DEFAULT_HEADROOM * service
    assert limit.current == 24  # 292.5/s x 50 ms x 1.5 (22), plus 2


def test_a_bunch_of_429s_cuts_the_records_in_flight_once_not_once_each() -> None:
    limit = AdaptiveLimit()
    for _ in range(300):
        limit.finish(RecordStats(pace=292.5), 0.05)
    assert limit.current == 24
    for _ in range(20):  # twenty records of one bunch were refused once each
        limit.finish(RecordStats(pace=292.5, backoff=backoff_for(429)), 0.05)
    assert limit.current == 21  # a tenth off, once (it was 0.9 ** 20: down to 2)


# -- the headroom and catching up ------------------------------------------------------------------


def test_a_caller_up_to_20ms_late_still_gets_the_missed_slot_later_ones_restart_at_now() -> None:
    limiter = RateLimiter(LIMIT)
    step = 1 / (LIMIT * DEFAULT_HEADROOM)
    assert limiter.reserve(10.0) == 10.0
    # Woken 15 ms late (a busy machine): the slot at 10 + step is still its, and the next.
    assert limiter.reserve(10.0 + step + 0.015) == pytest.approx(10.0 + step)
    assert limiter.reserve(10.0 + step + 0.015) == pytest.approx(10.0 + 2 * step)
    # 50 ms late: those slots are gone; the schedule starts again at the caller's time.
    assert limiter.reserve(11.0) == 11.0
    assert limiter.reserve(11.0) == pytest.approx(11.0 + step)


@settings(max_examples=40, deadline=None)
@given(arrivals=st.lists(st.floats(0.0, 0.03), min_size=50, max_size=400))
def test_catching_up_never_puts_the_limit_in_one_second(arrivals: list[float]) -> None:
    # Callers arrive at random moments (late or early); each sends at max(its slot, arrival).
    limiter = RateLimiter(LIMIT)
    now, sends = 0.0, []
    for gap in arrivals:
        now += gap
        sends.append(max(limiter.reserve(now), now))
    assert max_in_any_window(sends) < LIMIT


# -- the limiter's reaction to one 429 -------------------------------------------------------------


def _limiter_in_a_minute_with_room(now: float, wall: float) -> RateLimiter:
    limiter = RateLimiter(LIMIT)
    minute = (math.floor(wall / 60) + 1) * 60
    burst = limiter.observe(now, limit_per_minute=MINUTE_BUDGET, remaining=12_000,
                            reset_in=minute - wall, reset_at=minute)
    assert burst is False
    return limiter


@pytest.mark.parametrize("reset_in", [0.05, 0.5, 0.99])
def test_a_429_resetting_within_a_second_while_the_minute_has_room_slows_down_not_pauses(
    reset_in: float,
) -> None:
    now, wall = 100.0, WALL0 + 20.0
    limiter = _limiter_in_a_minute_with_room(now, wall)
    limiter.reserve(now)
    burst = limiter.observe(now, limit_per_minute=MINUTE_BUDGET, remaining=0,
                            reset_in=reset_in, reset_at=wall + reset_in, refused=True)
    assert burst is True
    assert limiter.headroom == pytest.approx(DEFAULT_HEADROOM * 0.98)
    # The next slot is one (slower) pace away, not at the reset.
    assert limiter.reserve(now) == pytest.approx(now + 1 / (LIMIT * DEFAULT_HEADROOM))
    assert limiter.reserve(now) - limiter.reserve(now) == pytest.approx(
        -1 / (LIMIT * limiter.headroom), rel=0.01)


def test_a_429_from_a_window_shorter_than_the_minute_is_a_burst_even_a_second_away() -> None:
    now, wall = 100.0, WALL0 + 20.4
    limiter = _limiter_in_a_minute_with_room(now, wall)
    assert limiter.observe(now, remaining=0, reset_in=1.6, reset_at=WALL0 + 22, refused=True)
    assert limiter.reserve(now) == now


def test_a_429_naming_the_spent_minute_waits_for_its_reset() -> None:
    now = 100.0  # at WALL0 + 59.6
    limiter = RateLimiter(LIMIT)
    minute = WALL0 + 60
    limiter.observe(now, limit_per_minute=MINUTE_BUDGET, remaining=3, reset_in=0.4,
                    reset_at=minute)
    burst = limiter.observe(now, remaining=0, reset_in=0.4, reset_at=minute, refused=True)
    assert burst is False
    assert limiter.reserve(now) == pytest.approx(now + 0.4)


def test_a_429_a_second_or_more_away_with_no_minute_known_waits_for_its_reset() -> None:
    limiter = RateLimiter(LIMIT)
    assert not limiter.observe(5.0, remaining=0, reset_in=12.0, reset_at=WALL0 + 60,
                               refused=True)
    assert limiter.reserve(5.0) == pytest.approx(17.0)


def test_a_429_with_calls_left_is_a_burst() -> None:
    limiter = RateLimiter(LIMIT)
    assert limiter.observe(5.0, remaining=40, reset_in=30.0, reset_at=WALL0 + 60, refused=True)
    assert limiter.reserve(5.0) == 5.0
    assert limiter.headroom < DEFAULT_HEADROOM


@pytest.mark.parametrize(
    ("reset_in", "reset_at", "minute", "left", "burst"),
    [
        (0.4, WALL0 + 21, WALL0 + 60, 12_000, True),    # a shorter window, within a second
        (1.6, WALL0 + 22, WALL0 + 60, 12_000, True),    # a shorter window, further away
        (0.4, WALL0 + 60, WALL0 + 60, 12_000, True),    # the minute's end, but it has room
        (0.4, WALL0 + 60, WALL0 + 60, 100, False),      # the minute's end, and it is spent
        (5.0, WALL0 + 60, WALL0 + 60, 12_000, False),   # the minute's own reset, seconds away
        (0.4, WALL0 + 1, None, math.inf, True),         # no minute known: less than a second
        (1.0, WALL0 + 1, None, math.inf, False),        # no minute known: a second or more
        (0.4, WALL0 + 61, WALL0 + 60, 12_000, True),    # a stale minute: less than a second
    ],
)
def test_what_a_429_means(
    reset_in: float, reset_at: float, minute: float | None, left: float, burst: bool
) -> None:
    assert refusal_is_burst(reset_in=reset_in, reset_at=reset_at, minute=minute,
                            minute_remaining=left, pace=292.5) is burst


# -- never over the minute's budget ----------------------------------------------------------------

_step = st.tuples(
    st.floats(0.0, 3.0),  # virtual seconds before the step
    st.sampled_from(["reserve", "accepted", "burst", "spent", "slow_down"]),
    st.integers(1, 200),  # calls reserved, or the share of the budget left (per mille)
)


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(_step, max_size=40), offset=st.floats(0.0, 59.9))
def test_never_faster_than_the_pace_and_never_over_what_the_minute_has_left(
    steps: list[tuple[float, str, int]], offset: float
) -> None:
    limiter = RateLimiter(LIMIT)
    now = 0.0
    slots: list[tuple[int, float]] = []  # (step that booked it, slot)
    promises: list[tuple[int, float, float]] = []  # (from step, until, calls left)
    closed: list[tuple[int, float]] = []  # from step, no slot until: a spent minute
    for step, (pause, kind, amount) in enumerate(steps):
        now += pause
        wall = WALL0 + offset + now
        minute = (math.floor(wall / 60) + 1) * 60
        if kind == "reserve":
            slots.extend((step, limiter.reserve(now)) for _ in range(amount))
        elif kind == "accepted":
            left = MINUTE_BUDGET * amount / 1000
            limiter.observe(now, limit_per_minute=MINUTE_BUDGET, remaining=left,
                            reset_in=minute - wall, reset_at=minute)
            promises.append((step, now + minute - wall, left))
        elif kind == "burst":
            limiter.observe(now, remaining=0, reset_in=0.5, reset_at=wall + 0.5, refused=True)
        elif kind == "spent":
            if not limiter.observe(now, remaining=0, reset_in=minute - wall, reset_at=minute,
                                   refused=True):
                closed.append((step, now + max(minute - wall, 1e-3)))
        else:
            limiter.slow_down(now)
    times = sorted(slot for _, slot in slots)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 1 / (LIMIT * DEFAULT_HEADROOM) - 1e-9 for gap in gaps)
    # Slots booked after a reply: within what it said the minute had left, and none at all
    # before the reset of a minute a 429 said was spent.
    for begin, end, left in promises:
        assert sum(1 for at, s in slots if at > begin and s < end) <= max(left, 1)
    for begin, end in closed:
        assert not [s for at, s in slots if at > begin and s < end]
