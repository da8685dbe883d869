"""How a node decides its share of orphaned sessions and whether it runs more than its share
(watui/cluster/node.py ``Load``): the arithmetic behind spreading takeovers and rebalancing."""

from __future__ import annotations

from watui.cluster.node import Load


def test_survivors_split_a_dead_nodes_sessions_by_what_brings_each_to_its_share() -> None:
    # n1 died with 12; n2 and n3 run 4 each, all of capacity 100: six each.
    assert Load(mine=4, capacity=100, others=[(4, 100)]).share(12) == 6
    # One survivor has half the capacity: a third of the 12 + 8.
    assert Load(mine=4, capacity=50, others=[(4, 100)]).share(12) == 3
    assert Load(mine=4, capacity=100, others=[(4, 50)]).share(12) == 10


def test_a_node_that_handed_sessions_over_does_not_take_them_back() -> None:
    # n1 handed 5 of its 12 over to n2, which just joined (its heartbeat still says 0).
    assert Load(mine=7, capacity=100, others=[(0, 100)]).share(5) == 0
    assert Load(mine=0, capacity=100, others=[(12, 100)]).share(5) == 5


def test_when_the_nodes_below_their_share_are_full_every_node_with_room_helps() -> None:
    # n2 (capacity 2, full at 2) cannot take its share: n3, at its share, takes the rest.
    assert Load(mine=5, capacity=100, others=[(2, 2)]).share(3) == 3
    assert Load(mine=2, capacity=2, others=[(5, 100)]).share(3) == 0
    assert Load(mine=3, capacity=3, others=[(3, 3)]).share(4) == 0
    assert Load(mine=3, capacity=3, others=[(3, 3)]).room == 0


def test_a_node_runs_more_than_its_share_only_while_another_has_room_below_its_own() -> None:
    assert Load(mine=12, capacity=100, others=[(0, 100)]).excess() == 6
    assert Load(mine=7, capacity=100, others=[(5, 100)]).excess() == 0  # within one: balanced
    assert Load(mine=12, capacity=100, others=[(2, 2)]).excess() == 0  # the other is full
    assert Load(mine=12, capacity=100, others=[]).excess() == 0
    assert Load(mine=6, capacity=100, others=[(6, 100), (0, 100)]).excess() == 2
