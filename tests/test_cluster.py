"""REDIS_CLUSTER=1 on a real 3-node cluster: hash-tagged keys, same guarantees as one Redis."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import redis
from redis.crc import key_slot

from simlib.config import Settings
from simlib.game import STATUS, replay
from simlib.keys import Keyspace
from simlib.runner import simulate
from simlib.store import EmbeddedCluster, connect

KEYS = Keyspace(cluster=True)


@pytest.fixture(scope="module")
def cluster():
    with EmbeddedCluster(nodes=3) as c:
        yield c


@pytest.fixture
def cluster_settings(cluster) -> Settings:
    client = connect(Settings(redis_url=cluster.url, redis_cluster=True))
    for node in cluster.nodes:  # a clean cluster for each test
        redis.Redis(port=node.port).flushall()
    client.close()
    return Settings(redis_url=cluster.url, redis_cluster=True, server_sleep=0.0, lobby_timeout=1.0,
                    redis_expiry=300, logger_module="redis", websocket_host="127.0.0.1", websocket_port=0)


def node_keys(cluster) -> list[list[str]]:
    return [list(redis.Redis(port=n.port, decode_responses=True).scan_iter(count=1000)) for n in cluster.nodes]


def test_full_simulation_on_a_cluster_keeps_every_rule(cluster, cluster_settings):
    """20 bots on 3 nodes: no error, no overfilled game, every log replays, keys on every node."""
    result = simulate(cluster_settings, players=20, games=4, workers=0, progress=False, server_mode="process", seed=4)
    assert result.recorder.errors == []
    summary = result.summary()
    assert summary["completed"] + summary["timed_out"] == summary["games"] > 0

    client = connect(cluster_settings)
    games = client.lrange(KEYS.players(2), 0, -1) + client.lrange(KEYS.players(3), 0, -1)
    assert len(games) == summary["games"]
    for g in games:
        n = int(client.get(KEYS.game_participants(g)))
        members = client.smembers(KEYS.game(g))
        assert len(members) <= n and int(client.zscore(KEYS.participants, g)) == len(members)
        assert len({client.hget(KEYS.hero(g, u), "id") for u in members}) == len(members)  # no hero twice
        if client.get(KEYS.status(g)) == STATUS.COMPLETED:
            start = {}
            for u in members:
                base = json.loads(client.hget(KEYS.superheros, client.hget(KEYS.hero(g, u), "id")))["powerstats"]
                start[u] = {"attack": base["attack"], "health": base["health"]}
            assert replay(start, [json.loads(x) for x in client.lrange(KEYS.logs(g), 0, -1)])["winner"]

    per_node = node_keys(cluster)
    print("keys per node:", [len(k) for k in per_node])
    assert all(any(k.startswith("games:{") for k in keys) for keys in per_node), "every node holds games"
    # one game's keys never straddle two nodes
    for keys in per_node:
        for k in keys:
            if k.startswith("games:{"):
                g = k.split("{", 1)[1].split("}", 1)[0]
                assert key_slot(k.encode()) == key_slot(KEYS.status(g).encode())


def test_concurrent_joins_never_overfill_on_a_cluster(cluster, cluster_settings):
    """Joining is still atomic across the two slots a cluster join touches: 30 bots, 3 games each."""
    result = simulate(cluster_settings.replace(lobby_timeout=2.0), players=30, games=3, workers=0,
                      progress=False, server_mode="thread", seed=9)
    assert result.recorder.errors == []
    client = connect(cluster_settings)
    sizes = Counter()
    for n in (2, 3):
        for g in client.lrange(KEYS.players(n), 0, -1):
            members = client.scard(KEYS.game(g))
            assert members <= n
            sizes[(n, members)] += 1
    assert sum(c for (n, m), c in sizes.items() if m == n) == result.summary()["completed"]
    assert not [k for keys in node_keys(cluster) for k in keys if k.endswith(":open")], "a lobby stayed open"


def test_worker_on_a_cluster_leaves_nothing_without_expiry(cluster, cluster_settings):
    """With a worker, every game key on every node gets a TTL and the game lists are emptied."""
    simulate(cluster_settings, players=10, games=2, workers=1, progress=False, server_mode="thread", seed=2)
    client = connect(cluster_settings)
    left = [(k, client.ttl(k)) for keys in node_keys(cluster) for k in keys if k.startswith("games:")]
    assert left and all(ttl > 0 for _, ttl in left), [k for k, ttl in left if ttl <= 0][:5]
    assert client.llen(KEYS.players(2)) == client.llen(KEYS.players(3)) == 0
    assert client.zcard(KEYS.participants) == 0


def test_streams_worker_and_archive_on_a_cluster(cluster, cluster_settings):
    """TASK_TRANSPORT=streams on a cluster: the tasks reach the stream (added after each game's end, in its own slot), one worker handles and acknowledges them all, every game is archived once, and every game key expires."""
    settings = cluster_settings.replace(task_transport="streams")
    result = simulate(settings, players=10, games=2, workers=1, progress=False, server_mode="thread", seed=6)
    client = connect(settings)
    left = [(k, client.ttl(k)) for keys in node_keys(cluster) for k in keys if k.startswith("games:")]
    assert left and all(ttl > 0 for _, ttl in left), [k for k, ttl in left if ttl <= 0][:5]
    group = {g["name"]: g for g in client.xinfo_groups(KEYS.tasks)}["workers"]
    assert group["pending"] == 0 and group["lag"] == 0
    archived = [fields["game_token"] for _id, fields in client.xrange(KEYS.archive)]
    assert sorted(archived) == sorted({row["game"] for row in result.recorder.games})
