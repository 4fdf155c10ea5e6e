"""scenarios.delivery.Membership fed messages directly: every count exact, whatever the order."""

from __future__ import annotations

from collections import Counter

from scenarios.delivery import (
    COUNTERS,
    DUPLICATED,
    EXPECTED,
    IN_FLIGHT,
    LOST,
    OUT_OF_ORDER,
    RECEIVED,
    WITHOUT_END_MARKER,
    Membership,
)

P, Q = 7, 9  # publisher ids


def member() -> tuple[Membership, Counter[str]]:
    counts: Counter[str] = Counter()

    def count(name: str, n: int) -> None:
        counts[name] += n

    return Membership(count), counts


def feed(membership: Membership, publisher: int, seqs: list[int]) -> list[int]:
    return [membership.message(publisher, seq) for seq in seqs]


def balanced(counts: Counter[str]) -> bool:
    return counts[EXPECTED] == counts[RECEIVED] + counts[LOST] + counts[IN_FLIGHT]


def test_in_order_from_mid_sequence_to_end_marker_is_exact() -> None:
    """Joined at seq 40 of a publisher that published 50: expected 10, all received."""
    membership, counts = member()
    assert feed(membership, P, list(range(40, 50))) == [0] * 10
    assert membership.end_marker(P, 50) == 0
    membership.close(run_stopped=True)
    assert counts[EXPECTED] == counts[RECEIVED] == 10
    assert counts[LOST] == counts[IN_FLIGHT] == counts[DUPLICATED] == counts[OUT_OF_ORDER] == 0
    assert counts[WITHOUT_END_MARKER] == 0
    assert set(COUNTERS) <= set(counts)  # every counter present, zeros too


def test_gap_is_reported_and_lost_once_the_marker_comes() -> None:
    """5 and 6 skipped: the message after them says a gap of 2; the marker counts them lost."""
    membership, counts = member()
    assert feed(membership, P, [3, 4, 7, 8]) == [0, 0, 2, 0]
    assert counts[LOST] == 0  # not known lost before the marker
    assert membership.end_marker(P, 9) == 0
    assert (counts[EXPECTED], counts[RECEIVED], counts[LOST]) == (6, 4, 2)


def test_messages_missing_before_the_marker_are_a_gap_and_lost() -> None:
    """Published 0..9, got 0..6: the marker reports the missing tail (3) and counts it lost."""
    membership, counts = member()
    feed(membership, P, list(range(7)))
    assert membership.end_marker(P, 10) == 3
    assert (counts[EXPECTED], counts[RECEIVED], counts[LOST]) == (10, 7, 3)


def test_duplicates_count_once_as_received() -> None:
    """A message got twice is received once and duplicated once; a repeated marker too."""
    membership, counts = member()
    feed(membership, P, [0, 1, 1, 2, 0])
    membership.end_marker(P, 3)
    membership.end_marker(P, 3)
    assert (counts[RECEIVED], counts[DUPLICATED], counts[EXPECTED], counts[LOST]) == (3, 3, 3, 0)


def test_reordered_message_fills_its_gap() -> None:
    """3 before 2: a gap when 3 comes, then 2 is out of order and not lost."""
    membership, counts = member()
    assert feed(membership, P, [0, 1, 3, 2, 4]) == [0, 0, 1, 0, 0]
    membership.end_marker(P, 5)
    assert (counts[RECEIVED], counts[OUT_OF_ORDER], counts[LOST], counts[EXPECTED]) == (5, 1, 0, 5)


def test_message_older_than_the_first_extends_the_membership() -> None:
    """First got 10, then 8: membership began at 8 at the latest, and 9 is missing."""
    membership, counts = member()
    feed(membership, P, [10, 11, 8])
    membership.end_marker(P, 12)
    assert (counts[EXPECTED], counts[RECEIVED], counts[LOST], counts[OUT_OF_ORDER]) == (4, 3, 1, 1)


def test_marker_without_messages_means_nothing_was_expected() -> None:
    """Joined after the publisher's last message: the marker comes first, nothing expected."""
    membership, counts = member()
    assert membership.end_marker(P, 100) == 0
    membership.close(run_stopped=True)
    assert counts[EXPECTED] == counts[LOST] == counts[RECEIVED] == 0
    assert counts[WITHOUT_END_MARKER] == 0


def test_missing_marker_at_the_run_stop_is_in_flight_not_lost() -> None:
    """No marker when the run stops: the missing (4) are in flight, the stream is counted so."""
    membership, counts = member()
    feed(membership, P, [20, 21, 23, 24])
    membership.close(run_stopped=True)
    membership.close(run_stopped=False)  # counted once: on_stop, then on_end
    assert (counts[EXPECTED], counts[RECEIVED], counts[IN_FLIGHT], counts[LOST]) == (5, 4, 1, 0)
    assert counts[WITHOUT_END_MARKER] == 1
    assert balanced(counts)


def test_missing_marker_on_a_lost_connection_is_lost() -> None:
    """The connection was lost: what it missed never comes, so it is lost, not in flight."""
    membership, counts = member()
    feed(membership, P, [0, 2])
    membership.close(run_stopped=False)
    assert (counts[EXPECTED], counts[LOST], counts[IN_FLIGHT], counts[WITHOUT_END_MARKER]) == (
        3, 1, 0, 1,
    )  # fmt: skip


def test_publishers_are_counted_apart() -> None:
    """Two publishers: one ended (exact), one without marker at the stop; the sums balance."""
    membership, counts = member()
    for seq in range(5):
        membership.message(P, seq)
        membership.message(Q, 100 + seq)
    membership.message(Q, 107)  # 105, 106 missing
    membership.end_marker(P, 6)  # 5 missing at the end
    membership.close(run_stopped=True)
    assert counts[EXPECTED] == 6 + 8
    assert (counts[LOST], counts[IN_FLIGHT], counts[WITHOUT_END_MARKER]) == (1, 2, 1)
    assert balanced(counts)


def test_message_after_its_marker_is_out_of_order_only() -> None:
    """After the marker the stream is counted: a late message there is out of order only."""
    membership, counts = member()
    feed(membership, P, [0, 2])
    membership.end_marker(P, 3)
    feed(membership, P, [1])
    assert (counts[RECEIVED], counts[LOST], counts[OUT_OF_ORDER]) == (2, 1, 1)


def test_streams_whose_marker_never_came_count_the_tail_they_never_got() -> None:
    """A broker died: members on the other process got P's messages up to 4 and never its marker
    (P published 10). Each such stream, stopped by the run, never got 5..9; a member whose
    connection dropped is not counted (it stopped being a member)."""
    from scenarios.delivery import NEVER_ARRIVED, PUBLISHED_BY, folded

    counts: Counter[str] = Counter()
    for stopped in (True, True, False):
        membership = Membership(lambda name, n: counts.update({name: n}))
        feed(membership, P, [0, 1, 2, 3, 4])
        membership.close(run_stopped=stopped)
    marked, counts_marked = member()
    feed(marked, P, list(range(10)))
    marked.end_marker(P, 10)
    counts.update(counts_marked)
    counts[f"{PUBLISHED_BY}{P}"] += 10  # the publisher's total, counted at its marker
    merged = folded(counts)
    assert merged[NEVER_ARRIVED] == 2 * 5
    assert not [name for name in merged if name.startswith("broadcast unmarked")]
    assert f"{PUBLISHED_BY}{P}" not in merged
    assert NEVER_ARRIVED not in folded(counts_marked)  # every marker came: nothing to fold


def test_a_user_that_reconnects_counts_what_it_missed_while_away() -> None:
    """A member heard P up to 4, its connection dropped, and its new connection's first
    message from P is 9: it missed 5..8 while away. Each membership is still exact on its own."""
    from scenarios.delivery import MISSED_RECONNECTING

    counts: Counter[str] = Counter()
    heard: dict[int, int] = {}
    first = Membership(lambda name, n: counts.update({name: n}), heard)
    feed(first, P, [0, 1, 2, 3, 4])
    first.close(run_stopped=False)
    assert heard == {P: 5}
    second = Membership(lambda name, n: counts.update({name: n}), heard)
    assert feed(second, P, [9, 10, 11]) == [0, 0, 0]
    second.end_marker(P, 12)
    assert counts[MISSED_RECONNECTING] == 4
    assert counts[LOST] == 0 and balanced(counts)
    second.close(run_stopped=True)
    third = Membership(lambda name, n: counts.update({name: n}), heard)
    third.end_marker(P, 12)  # joined after P's last message: nothing more was missed
    assert counts[MISSED_RECONNECTING] == 4
