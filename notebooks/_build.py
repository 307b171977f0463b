"""Write the tutorial notebooks from the sources below (run: ``python notebooks/_build.py``).

Why a generator: a notebook file is JSON that is hard to review and easy to commit
with outputs in it. Here each notebook is plain text, one cell after each ``#%% md``
or ``#%% code`` line; the script writes them without outputs or execution counts and
with stable cell ids, so a diff shows only what changed. ``--check`` exits 1 when a
stored notebook differs from what this file would write (the test suite runs it).
Edit the sources here, not the ``.ipynb`` files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

# ---------------------------------------------------------------------------------------------
NB01 = r'''
#%% md
# 1 · Heroes in Redis

**What you'll do:** start a private Redis server, load the hero roster into it, and explore
the `superheros` hash with `HLEN`, `HGET` and pandas.

**What you'll learn:**
- how the kit keeps every hero in one Redis **hash** (field = hero id, value = the hero as JSON);
- how a roster is replaced atomically: written to a temporary hash, then `RENAME`d;
- how the raw powerstats are cleaned into `health` and `attack`, shown on real rows;
- how to read the table next to each result: **the exact Redis commands that step caused**,
  captured with `MONITOR`.

**What you'll need:** nothing running. This notebook starts its own Redis server (no Docker,
no configuration) and stops it at the end. It runs in a few seconds.

```mermaid
flowchart LR
    file["data/heroes.json<br/>roster file"] -->|load_roster| nb["this notebook"]
    nb -->|"build_db: HSET + RENAME"| redis[("embedded Redis<br/>superheros hash")]
    nb -->|"HLEN · HGET · HMGET · HGETALL"| redis
    redis -.->|MONITOR| log["CommandLog<br/>the command tables"]
```
#%% code
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import redis

from simlib import explore, game
from simlib.roster import build_db, load_roster
from simlib.store import EmbeddedRedis
from simlib.tutorial import CommandLog, check, show
#%% md
## Start a private Redis

`EmbeddedRedis` runs a real Valkey server (a Redis-compatible server shipped as a Python
package) on a free port of this machine, with persistence off. It never touches a Redis
you may already run on port 6379.
#%% code
redis_server = EmbeddedRedis().start()
r = redis.Redis.from_url(redis_server.url, decode_responses=True)
print("Redis at", redis_server.url, "answers PING with", r.ping())
#%% md
## The roster file

The kit ships its own roster in the shape of the public Super Hero API: one JSON object per
hero, powerstats as strings, some of them `"null"` or `"0"`, as in the real API.
#%% code
heroes = load_roster()
print(len(heroes), "heroes in the roster file; the first one:")
{k: heroes[0][k] for k in ("id", "name", "powerstats", "biography")}
#%% md
## Load it into Redis and watch the commands

`build_db` cleans every record first, then writes them all into a temporary hash with a
few large `HSET` commands (500 fields each, sent in one pipeline) and finally `RENAME`s the
temporary hash over `superheros`. Readers never see a half-loaded roster.

`CommandLog` runs `MONITOR` on a connection of its own while the step runs. The table on the
right is what the server executed, in order, with the milliseconds since the first one; `who`
says which connection sent it: `this notebook`, `lua (script)` for a command a Lua script ran
inside Redis, or the address of another client (later: the game server, the worker).
#%% code
with CommandLog(r) as log:
    count = build_db(r, heroes)
show(count, log, title="heroes loaded")
#%% code
log.summary()
#%% md
## HLEN and HGET

One hash holds the whole roster: `HLEN` counts its fields, `HGET` reads one hero.
#%% code
with CommandLog(r) as log:
    n = r.hlen("superheros")
    first = json.loads(r.hget("superheros", "1"))
show({"HLEN superheros": n, "HGET superheros 1": first}, log, cli=True)
#%% md
## The cleaning rules, on real rows

Every powerstat becomes a whole number; `"null"`, `"0"`, an empty string or anything
non-numeric becomes **1**. Then two numbers are added to the powerstats:

- `health = intelligence × strength × durability × 10`
- `attack = speed × power × combat`

Below: heroes whose raw record has a missing stat, read back from Redis with **one** `HMGET`.
#%% code
raw_stats = {h["id"]: h["powerstats"] for h in heroes}
missing = [hid for hid, stats in raw_stats.items() if any(v in ("null", "0", "") for v in stats.values())][:6]
with CommandLog(r) as log:
    stored = r.hmget("superheros", missing)
rows = []
for hid, text in zip(missing, stored):
    clean = json.loads(text)["powerstats"]
    for stat in game.POWERSTATS:
        if raw_stats[hid][stat] in ("null", "0", ""):
            rows.append({"id": hid, "stat": stat, "raw": raw_stats[hid][stat], "stored": clean[stat],
                         "health": clean["health"], "attack": clean["attack"]})
show(pd.DataFrame(rows), log, title="raw → stored, heroes with a missing stat")
#%% code
p = json.loads(stored[0])["powerstats"]
print(f"health = {p['intelligence']} × {p['strength']} × {p['durability']} × 10 = {p['health']:,}")
print(f"attack = {p['speed']} × {p['power']} × {p['combat']} = {p['attack']:,}")
assert (p["health"], p["attack"]) == game.hero_numbers(p)
#%% md
## The whole hash as a DataFrame

`explore.heroes_frame` reads the hash with one `HGETALL` and decodes each JSON value.
#%% code
with CommandLog(r) as log:
    df = explore.heroes_frame(r)
show(df.head(8), log, title=f"heroes_frame(r): {len(df)} rows")
#%% md
## Health and attack distributions

Both are products of three stats, so they spread over several decades: a log scale shows them
best. A missing stat (cleaned to 1) makes the product tiny: those are the bars far on the left.
#%% code
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for ax, stat, color in zip(axes, ["health", "attack"], ["tab:green", "tab:red"]):
    values = df[stat]
    ax.hist(values, bins=np.logspace(np.log10(values.min()), np.log10(values.max()), 40), color=color)
    ax.set_xscale("log")
    ax.set_xlabel(stat)
    ax.set_ylabel("heroes")
    ax.set_title(f"hero {stat} (log scale)")
fig.tight_layout()
#%% code
df[["health", "attack"]].describe().round(0)
#%% md
## Try it yourself

**Exercise 1.** Which hero has the highest `attack`? Put its id (an `int`) in `answer1`.
#%% code
answer1 = ...  # your code here
check(answer1, lambda a: df.loc[a, "attack"] == df["attack"].max(), "sort df by the attack column");
#%% md
**Exercise 2.** With **one** Redis command, fetch the stored records of heroes `7` and `42`,
and put the list of their two names in `names` (hero 7 first). The check also looks at the
commands your cell sent.
#%% code
with CommandLog(r) as exercise_log:
    names = ...  # your code here
check(names, lambda a: a == [df.loc[7, "name"], df.loc[42, "name"]] and exercise_log.counts() == {"HMGET": 1},
      "r.hmget('superheros', ['7', '42']) returns both JSON records; json.loads each");
#%% md
## Solutions
#%% code
answer1 = int(df["attack"].idxmax())
assert check(answer1, lambda a: df.loc[a, "attack"] == df["attack"].max())

with CommandLog(r) as exercise_log:
    names = [json.loads(text)["name"] for text in r.hmget("superheros", ["7", "42"])]
assert check(names, lambda a: a == [df.loc[7, "name"], df.loc[42, "name"]] and exercise_log.counts() == {"HMGET": 1})
#%% md
## Clean up

Stop everything this notebook started: here, only the Redis server.
#%% code
r.close()
redis_server.stop()
redis_server
'''

# ---------------------------------------------------------------------------------------------
NB02 = r'''
#%% md
# 2 · Login and lobby, by hand

**What you'll do:** start the game server, then play the part of the bots from cells: log a
player in, ask for a 2-player game, bring a second player in and watch the game start.

**What you'll learn:**
- the v1 WebSocket protocol: which route answers which frame;
- what a login writes (the `users` hash) and what joining a game writes: every key of a game,
  created by one Lua script in one atomic step;
- how the server pushes START and USER'S TURN to the lobby connections;
- what happens to a lobby nobody joins (it times out).

**What you'll need:** notebook 1 helps (the `superheros` hash). Everything runs in this
notebook: its own Redis, the game server in a thread. A few seconds.

```mermaid
sequenceDiagram
    participant A as alice (this notebook)
    participant B as bob (this notebook)
    participant S as game server
    participant R as Redis
    A->>S: /api/v1/login {"USER": "alice"}
    S->>R: EVALSHA login.lua (HSETNX users)
    A->>S: /api/v1/game/find {"PARTICIPANTS": 2}
    S->>R: EVALSHA join.lua (opens the game)
    A->>S: /api/v1/game/lobby (kept open)
    B->>S: login, find (same game: it is full now)
    S->>R: EVALSHA join.lua (status Starting, order, PUBLISH start)
    S-->>A: START, USER'S TURN (if first)
    S-->>B: START, USER'S TURN (if first)
```
#%% code
import pandas as pd
import redis

from simlib.config import Settings
from simlib.launch import start_server
from simlib.roster import build_db, load_roster
from simlib.store import EmbeddedRedis
from simlib.tutorial import CommandLog, Lobby, PubSubTap, check, find, keys_frame, login, show
#%% md
## Redis, the roster, the game server

The server runs in a thread of this notebook's kernel and listens on a free port. Its lobby
time-out is long (120 s) so you can take your time between cells; it is never waited for
when the notebook runs top to bottom. The server publishes its log records on Redis pub/sub
(channels `lib.*`); a tap started first collects them. `stdout_level="WARNING"` keeps the
same records out of this notebook's output, except warnings.
#%% code
redis_server = EmbeddedRedis().start()
r = redis.Redis.from_url(redis_server.url, decode_responses=True)
build_db(r, load_roster())

settings = Settings(redis_url=redis_server.url, server_sleep=0.0, lobby_timeout=120.0,
                    websocket_host="127.0.0.1", websocket_port=0)
tap = PubSubTap(r).start()
game_server = start_server(settings, port=0, stdout_level="WARNING")
URL = game_server.url
URL
#%% md
## Log alice in

`login` opens `/api/v1/login`, sends `{"PAYLOAD": {"USER": "alice"}}` and reads the answer.
A new name gets `USER CREATED` first, then its token.

In the table: the server runs the login script with `EVALSHA` (the script's SHA1 digest). If
you also see `SCRIPT LOAD`, Redis did not know the script yet, so redis-py loaded it and ran it
again. The lines marked `lua (script)` are what the script did inside Redis: `EXISTS superheros`
(no heroes, no login), then `HSETNX users alice <token>`, which writes only if the name is new.
The `PUBLISH` is the server's log record "User Created" going to pub/sub.
#%% code
with CommandLog(r) as log:
    reply = login(URL, "alice")
alice = reply["PAYLOAD"]["USER_TOKEN"]
show(reply.frames, log, title="the frames the server sent")
#%% code
with CommandLog(r) as log:
    users = r.hgetall("users")
show(users, log, title="HGETALL users", cli=True)
#%% md
Logging in again with the same name changes nothing: `HSETNX` finds the field and the script
answers with the stored token (`HGET`). No `USER CREATED` this time.
#%% code
with CommandLog(r) as log:
    again = login(URL, "alice")
assert again["PAYLOAD"]["USER_TOKEN"] == alice
show(again.frames, log, title="second login: the same token")
#%% md
## Ask for a 2-player game

`find` sends the user token and the number of players. The join script looks at the newest
game opened for 2 players (`LINDEX games:players:2 -1`); there is none, so it opens one:
status `Waiting Lobby`, host, participant count, the game in `games:players:2`. Then it draws
a hero nobody in this game has (`HRANDFIELD superheros`), copies its `attack` and `health` into
a hash of the game, and counts the member in the `games:participants` sorted set.
#%% code
with CommandLog(r) as log:
    joined = find(URL, alice, 2)
game = joined["PAYLOAD"]["GAME_TOKEN"]
show(joined, log, title="find: alice asks for a 2-player game")
#%% md
Every key the join created (the keyspace is documented in `docs/keyspace.md`):
#%% code
with CommandLog(r) as log:
    keys = keys_frame(r, "games:*")
show(keys, log, title="every games:* key now")
#%% md
## Alice waits in the lobby

The lobby route keeps its connection open: the server pushes frames on it. Nothing comes
while alice is alone. (The table may also show the server's own reads for alice's lobby
connection: it checks that she is a member and reads the game's state.)
#%% code
lobby_alice = Lobby(URL, game, alice)
with CommandLog(r) as log:
    status = r.get(f"games:{game}:status")
show(status, log, title=f"GET games:{game[:8]}…:status", cli=True)
#%% md
## Bob joins: the game starts

Bob logs in and asks for a 2-player game too. The join script finds alice's game open and
puts him in. Now the game is full, so in the same atomic step the script sets the status to
`Starting`, writes the turn order (the sorted user tokens) to `games:<g>:order` and publishes
a `start` event on `simlib:events`. Every game server listens there and pushes START to the
lobby connections it holds; the first player in the order also gets USER'S TURN.
#%% code
bob = login(URL, "bob")["PAYLOAD"]["USER_TOKEN"]
with CommandLog(r) as log:
    joined_bob = find(URL, bob, 2)
    start_alice = lobby_alice.next()
    lobby_bob = Lobby(URL, game, bob)
    start_bob = lobby_bob.next()
    first = min(alice, bob)  # the turn order is the sorted list of user tokens
    turn = (lobby_alice if first == alice else lobby_bob).next()
show({"bob's find": joined_bob, "alice's lobby got": start_alice, "the first player then got": turn},
     log, title="bob joins, the game starts")
#%% code
pd.DataFrame(start_alice["PAYLOAD"]["PARTICIPANTS_HEROS"]).T.assign(
    player=lambda t: t["token"].map({alice: "alice", bob: "bob"}))
#%% code
with CommandLog(r) as log:
    keys = keys_frame(r, "games:*")
show(keys, log, title="the game's keys once it started")
#%% md
The status went `Waiting Lobby` → `Starting` → `Waiting Player`: the server set the last one
just before telling the first player it is their turn. Notebook 3 plays the turns.

## A lobby nobody joins

A second server with a 1-second lobby time-out (both servers share the same Redis). Carol asks
for a 3-player game there and opens her lobby; nobody else comes. After the time-out the
server runs the time-out script (status `Timed Out`, a `timeout` event) and pushes TIMED OUT.
It also publishes one "Cleaning Game Records" task per member for the clean-up worker
(notebook 4).
#%% code
quick_server = start_server(settings.replace(lobby_timeout=1.0), port=0, stdout_level="WARNING")
carol = login(quick_server.url, "carol")["PAYLOAD"]["USER_TOKEN"]
lonely = find(quick_server.url, carol, 3)["PAYLOAD"]["GAME_TOKEN"]
with CommandLog(r) as log:
    lobby_carol = Lobby(quick_server.url, lonely, carol)
    notice = lobby_carol.next(timeout=10)
show({"carol's lobby got": notice, "status": r.get(f"games:{lonely}:status")}, log, title="time-out")
#%% md
## What the server said on pub/sub

Every log record of the server went to a channel named after its logger. Notebook 4 is about
this traffic.
#%% code
tap.frame()[["channel", "log_message", "task"]]
#%% md
## Try it yourself

**Exercise 1.** How many members does alice and bob's game have? Ask Redis with one command
(the members are a set) and put the number in `answer1`.
#%% code
answer1 = ...  # your code here
check(answer1, 2, "SCARD games:<game token>: r.scard(...)");
#%% md
**Exercise 2.** Who plays first? Read it from Redis (the head of the game's order list) and
put the user token in `answer2`.
#%% code
answer2 = ...  # your code here
check(answer2, first, "the order list is games:<game>:order; its head is index 0 (LINDEX)");
#%% md
**Exercise 3.** Log in as `dave` on the main server (`URL`) and ask for a 3-player game.
Which status does his new game have? Put the status string in `answer3`.
#%% code
answer3 = ...  # your code here
check(answer3, "Waiting Lobby", "login(URL, 'dave'), then find(URL, token, 3), then GET games:<g>:status");
#%% md
## Solutions
#%% code
answer1 = r.scard(f"games:{game}")
assert check(answer1, 2)

answer2 = r.lindex(f"games:{game}:order", 0)
assert check(answer2, first)

dave = login(URL, "dave")["PAYLOAD"]["USER_TOKEN"]
dave_game = find(URL, dave, 3)["PAYLOAD"]["GAME_TOKEN"]
answer3 = r.get(f"games:{dave_game}:status")
assert check(answer3, "Waiting Lobby")
#%% md
## Clean up

Close the lobby connections, stop the tap, both servers and Redis.
#%% code
for lobby in (lobby_alice, lobby_bob, lobby_carol):
    lobby.close()
tap.stop()
for handle in (game_server, quick_server):
    handle.stop()
    assert handle.join(10), f"{handle.name} did not stop"
r.close()
redis_server.stop()
game_server, quick_server, redis_server
'''

# ---------------------------------------------------------------------------------------------
NB03 = r'''
#%% md
# 3 · Combat, turn by turn

**What you'll do:** put three players into one game and play its turns from cells, as the
bots do: wait for the turn notice, look at the enemies' heroes, attack one.

**What you'll learn:**
- how `games:<g>:order` rotates after each action, and how a dead hero leaves it;
- how health falls in the game's hero hashes (floor 0);
- how each action lands as one JSON record in `games:<g>:logs`;
- how the status moves `Waiting Player` ⇄ `In-Progress` until `Completed`;
- why an illegal action changes nothing: the action script checks first, writes after.

**What you'll need:** notebook 2 (login, find, lobby). Its own Redis and game server, started
below. A few seconds.

```mermaid
flowchart LR
    P["player on turn<br/>(this notebook)"] -->|"/game/hero × 2"| S[game server]
    P -->|"/game/action ATTACK"| S
    S -->|"EVALSHA action.lua"| R[("Redis<br/>hero hashes · order · logs · status")]
    R -->|"PUBLISH simlib:events turn"| S
    S -->|"USER'S TURN (after SERVER_SLEEP)"| N["next player's lobby"]
```
#%% code
import json

import matplotlib.pyplot as plt
import pandas as pd
import redis

from simlib.config import Settings
from simlib.explore import attacks_frame
from simlib.game import replay
from simlib.launch import start_server
from simlib.roster import build_db, load_roster
from simlib.store import EmbeddedRedis
from simlib.tutorial import CommandLog, Lobby, attack, check, find, hero, login, show
#%% md
## Set up a 3-player game

As in notebook 2, in one cell. `SERVER_SLEEP` is 0.05 s here: the server pauses that long
before each turn notice (status `In-Progress`), then marks the game `Waiting Player` and
tells the next player.
#%% code
redis_server = EmbeddedRedis().start()
r = redis.Redis.from_url(redis_server.url, decode_responses=True)
build_db(r, load_roster())
settings = Settings(redis_url=redis_server.url, server_sleep=0.05, lobby_timeout=120.0,
                    websocket_host="127.0.0.1", websocket_port=0)
game_server = start_server(settings, port=0, stdout_level="WARNING")
URL = game_server.url

tokens = {name: login(URL, name)["PAYLOAD"]["USER_TOKEN"] for name in ("alice", "bob", "carol")}
who = {token: name for name, token in tokens.items()}
(game,) = {find(URL, token, 3)["PAYLOAD"]["GAME_TOKEN"] for token in tokens.values()}
lobbies = {token: Lobby(URL, game, token) for token in tokens.values()}
starts = {token: lobby.until("START") for token, lobby in lobbies.items()}
first = r.lindex(f"games:{game}:order", 0)
lobbies[first].until("USER'S TURN")
print(f"game {game}: {who[first]} plays first")
#%% md
A helper that reads the game's state with one pipeline (one round trip), as a table with one
row per player:
#%% code
def state():
    """Status, log length and one row per player: hero, attack, health, place in the order."""
    pipe = r.pipeline(transaction=False)
    pipe.get(f"games:{game}:status")
    pipe.lrange(f"games:{game}:order", 0, -1)
    pipe.llen(f"games:{game}:logs")
    for token in tokens.values():
        pipe.hgetall(f"games:{game}:superheros:{token}")
    status, order, logs, *heroes = pipe.execute()
    rows = [{"player": who[t], "hero": int(h["id"]), "attack": int(h["attack"]), "health": int(h["health"]),
             "place in order": order.index(t) if t in order else "out"} for t, h in zip(tokens.values(), heroes)]
    return status, logs, pd.DataFrame(rows).set_index("player")


with CommandLog(r) as log:
    status, logs, table = state()
show(table, log, title=f"status {status!r}, {logs} log records")
#%% md
## One turn

The player on turn is the head of the order list. A turn: ask the server for each enemy's
hero (`/game/hero`), attack the weakest living one (`/game/action`), then wait until the next
player hears it is their turn (or, after the last blow, until every lobby hears COMPLETE).
#%% code
def play_turn():
    """Play the turn of the player at the head of the order; returns (record, status just after)."""
    player = r.lindex(f"games:{game}:order", 0)
    enemies = [t for t in tokens.values() if t != player]
    heroes = {e: hero(URL, game, e)["PAYLOAD"]["HERO"] for e in enemies}
    target = min((e for e in enemies if heroes[e]["health"] > 0), key=lambda e: heroes[e]["health"])
    record = attack(URL, game, player, target)
    status_now = r.get(f"games:{game}:status")
    if status_now == "Completed":
        for lobby in lobbies.values():
            lobby.until("COMPLETE")
    else:
        lobbies[r.lindex(f"games:{game}:order", 0)].until("USER'S TURN")
    return record, status_now


with CommandLog(r) as log:
    record, status_now = play_turn()
show(record, log, title=f"turn 1: the action reply (status right after it: {status_now!r})")
#%% md
Read the table from the top: the notebook's `LINDEX` (whose turn), the server's checks for
the two hero requests, then `EVALSHA` of the action script and its inner commands: it checks
status, membership and turn (`GET`, `SISMEMBER`, `LINDEX`), reads both heroes (`HGET`), writes
the new health (`HSET`), appends the record (`RPUSH …:logs`), rotates the order
(`LMOVE order order LEFT RIGHT`), sets the status and publishes a `turn` event on
`simlib:events`. The combat log record goes out on `lib.server.game` (a `PUBLISH`), and, after
the pause, the waiting script marks the game `Waiting Player` for the next player.
#%% code
status, logs, table = state()
show(table, title=f"after turn 1: status {status!r}, {logs} log record(s)")
#%% md
## An illegal move changes nothing

A player whose turn it is not tries to attack. The script reads what it must check, finds the
move illegal, and returns an error before its first write: no `HSET`, no `RPUSH`, no
`PUBLISH`. The server turns that into an error frame; the connection stays usable.
#%% code
order = r.lrange(f"games:{game}:order", 0, -1)
wrong = order[1]  # in the order, but not at its head
with CommandLog(r) as log:
    refused = attack(URL, game, wrong, order[0])
writes = {"SET", "HSET", "RPUSH", "LMOVE", "LREM", "PUBLISH"} & set(log.counts())
assert not writes, writes
show(refused, log, title=f"{who[wrong]} attacks out of turn")
#%% md
## Two more turns
#%% code
for n in (2, 3):
    if r.get(f"games:{game}:status") == "Completed":
        break  # rare: two one-hit kills
    with CommandLog(r) as log:
        record, status_now = play_turn()
    status, logs, table = state()
    details = record["STATUS"]["DETAILS"]
    show(table, log, title=f"turn {n}: {who[record['PAYLOAD']['USER_TOKEN']]} hit {who[details['ENEMY_TOKEN']]} "
                           f"for {details['ENEMY_DAMAGE']:,}; status {status!r}", max_rows=12)
#%% md
## Play to the end

The rest of the game in one loop (bounded: the longest fights of this roster take about a
hundred hits). The table on the right is long, so it is counted below it.
#%% code
with CommandLog(r) as log:
    for _ in range(1000):
        if r.get(f"games:{game}:status") == "Completed":
            break
        play_turn()
status, logs, table = state()
show(table, title=f"status {status!r} after {logs} attacks")
log.summary()
#%% md
## The game's log

Each action appended one JSON record to `games:<g>:logs`: the same bytes the attacker got as
its reply. Replaying them against the starting heroes (the pure rules in `simlib.game`) must
give the same winner and healths as Redis holds.
#%% code
with CommandLog(r) as log:
    records = [json.loads(text) for text in r.lrange(f"games:{game}:logs", 0, -1)]
attacks = attacks_frame(records).assign(attacker=lambda t: t["attacker"].map(who),
                                        enemy=lambda t: t["enemy"].map(who))
show(attacks.drop(columns=["game"]).head(10), log, title=f"LRANGE …:logs 0 -1 → {len(records)} records")
#%% code
start_heroes = starts[first]["PAYLOAD"]["PARTICIPANTS_HEROS"]
result = replay(start_heroes, records)
winner = r.lindex(f"games:{game}:order", 0)
assert result["winner"] == winner
assert all(int(r.hget(f"games:{game}:superheros:{t}", "health")) == h for t, h in result["health"].items())
print("replay agrees with Redis; winner:", who[winner])
#%% code
health = pd.DataFrame([{who[t]: h["health"] for t, h in start_heroes.items()}])
for rec in records:
    row = health.iloc[-1].copy()
    details = rec["STATUS"]["DETAILS"]
    row[who[details["ENEMY_TOKEN"]]] = details["ENEMY_HEALTH_POST"]
    health.loc[len(health)] = row
ax = health.plot(drawstyle="steps-post", figsize=(8, 3.5), title="health after each attack")
ax.set_xlabel("attack number")
ax.set_ylabel("health");
#%% md
## Try it yourself

**Exercise 1.** How much damage did the very first attack do? Read it from the game's log
list with one command and put the number in `answer1`.
#%% code
answer1 = ...  # your code here
check(answer1, lambda a: a == json.loads(r.lindex(f"games:{game}:logs", 0))["STATUS"]["DETAILS"]["ENEMY_DAMAGE"],
      "LINDEX games:<g>:logs 0 is the first record; json.loads it and look under STATUS → DETAILS");
#%% md
**Exercise 2.** Who won? Put the winner's name (`"alice"`, `"bob"` or `"carol"`) in `answer2`.
#%% code
answer2 = ...  # your code here
check(answer2, lambda a: tokens.get(a) == r.lindex(f"games:{game}:order", 0),
      "when the game is over the order list holds only the winner");
#%% md
**Exercise 3.** How many attacks did the game take? One command; put the number in `answer3`.
#%% code
answer3 = ...  # your code here
check(answer3, len(records), "every attack appended one record to games:<g>:logs: LLEN");
#%% md
## Solutions
#%% code
answer1 = json.loads(r.lindex(f"games:{game}:logs", 0))["STATUS"]["DETAILS"]["ENEMY_DAMAGE"]
assert check(answer1, records[0]["STATUS"]["DETAILS"]["ENEMY_DAMAGE"])

answer2 = who[r.lindex(f"games:{game}:order", 0)]
assert check(answer2, who[winner])

answer3 = r.llen(f"games:{game}:logs")
assert check(answer3, len(records))
#%% md
## Clean up
#%% code
for lobby in lobbies.values():
    lobby.close()
game_server.stop()
assert game_server.join(10), "the game server did not stop"
r.close()
redis_server.stop()
game_server, redis_server
'''

# ---------------------------------------------------------------------------------------------
NB04 = r'''
#%% md
# 4 · Pub/sub traffic and the worker

**What you'll do:** tap the log channels while bots play and read the messages as a table;
then let the clean-up worker handle finished games and watch expiries appear and keys vanish.

**What you'll learn:**
- what the server publishes, on which channel (`lib.server.lobby`, `lib.server.game`);
- what the worker does with a "Cleaning Game Records" task (`EXPIRE`, `ZREM`, `LREM`);
- two facts about Redis pub/sub, **with counts**: every subscriber gets every message (two
  workers both handle every task), and a message published while nobody listens is lost.

**What you'll need:** notebooks 2 and 3 help. Its own Redis and server; bots play in a thread.
About 10 seconds.

```mermaid
flowchart LR
    B["bots<br/>(a thread)"] <-->|WebSocket v1| S[game server]
    S -->|"EVALSHA …"| R[("Redis")]
    S -->|"PUBLISH lib.server.lobby / lib.server.game"| R
    R -->|"lib.* messages"| T["PubSubTap<br/>(this notebook)"]
    R -->|"lib.server.lobby"| W1[worker 1]
    R -->|"lib.server.lobby"| W2[worker 2]
    W1 -->|"EXPIRE · ZREM · LREM"| R
    W2 -->|"EXPIRE · ZREM · LREM"| R
```
#%% code
import matplotlib.pyplot as plt
import pandas as pd
import redis

from simlib.config import Settings
from simlib.launch import start_players, start_server, start_worker
from simlib.roster import build_db, load_roster
from simlib.store import EmbeddedRedis
from simlib.tutorial import CommandLog, PubSubTap, check, keys_frame, reset, show
#%% md
## Redis, roster, server

Fast settings: no pause between turns, lobbies time out after 1 s, and the worker gives a
finished game's keys 2 seconds to live (`REDIS_EXPIRY`).
#%% code
redis_server = EmbeddedRedis().start()
r = redis.Redis.from_url(redis_server.url, decode_responses=True)
build_db(r, load_roster())
settings = Settings(redis_url=redis_server.url, server_sleep=0.0, lobby_timeout=1.0, redis_expiry=2,
                    websocket_host="127.0.0.1", websocket_port=0)
game_server = start_server(settings, port=0, stdout_level="WARNING")
URL = game_server.url
CLEAN = "Cleaning Game Records"


def cleaning_tasks(messages):
    """How many clean-up tasks are among the tapped messages."""
    return sum(1 for m in messages if isinstance(m["json"], dict) and m["json"].get("log_message") == CLEAN)
#%% md
## Tap the channels while bots play

Four bots play two games each. Every game that ends (completed or timed out) publishes one
"Cleaning Game Records" task per member, so 4 × 2 = 8 tasks will come: the cell waits for
them (event-driven, bounded) before it stops tapping.
#%% code
with CommandLog(r) as log, PubSubTap(r) as tap:
    bots = start_players(URL, players=4, games=2, seed=4)
    assert bots.join(60), "the bots did not finish in time"
    assert tap.wait_for(lambda messages: cleaning_tasks(messages) >= 8, timeout=10)
messages = tap.frame()
show(messages[["channel", "log_message", "task"]], log, title=f"{len(messages)} messages on lib.*", max_rows=20)
#%% code
kind = messages["log_message"].str.split(":").str[0]  # "Player Joined Game: <g>" → "Player Joined Game"
by_kind = messages.groupby(["channel", kind]).size().rename("messages").reset_index()
show(by_kind, title="messages per channel and kind")
log.summary()
#%% md
## Nobody listened: the tasks are lost

No worker was running: only our tap listened, by **pattern** (`lib.*`), and it has stopped
now. Redis keeps no copy of a published message: a `PUBLISH` reaches the clients subscribed at
that moment, and nobody else, ever. Right now nobody listens on the worker's channel:
#%% code
with CommandLog(r) as log:
    listeners = dict(r.pubsub_numsub("lib.server.lobby"))
    patterns = r.pubsub_numpat()
show({"PUBSUB NUMSUB lib.server.lobby": listeners, "PUBSUB NUMPAT": patterns}, log, cli=True)
#%% md
A worker started now hears nothing of those games: stopping it with `drain` (the default)
makes it handle everything published before the stop, which here is nothing. The games'
keys keep no expiry (`ttl` -1) and would stay forever.
#%% code
late = start_worker(settings, name="late-worker", stdout_level="WARNING")
late.stop()
assert late.join(10)
keys = keys_frame(r)
lost = pd.DataFrame([{"tasks published": tap.count(CLEAN),
                      "tasks the late worker handled": late.part.handled,
                      "game keys": len(keys), "game keys without expiry": int((keys["ttl"] == -1).sum())}])
lost
#%% md
## Reset: remove only the kit's keys

`reset` scans for `games:*` and removes them with `UNLINK` (plus the `users` hash), in batches.
It never runs `FLUSHDB`: a key of your own survives.
#%% code
r.set("my:own:key", "still here")
with CommandLog(r) as log:
    removed = reset(r)
show({"keys removed": removed, "my:own:key": r.get("my:own:key"), "superheros kept": r.hlen("superheros")},
     log, title="reset(r)", max_rows=12)
#%% md
## The worker at work: expiries appear, keys vanish

Now a worker listens before the bots play. For each task it puts an expiry on the member's
hero hash; for the game's host it also expires the game's other keys and removes the game
from `games:participants` and `games:players:<n>`.

To see keys vanish without polling, we ask Redis for **keyspace notifications** of expired
keys (`notify-keyspace-events Ex`) and tap that channel too. (The command table stays empty:
`MONITOR` never shows administrative commands such as `CONFIG`.)
#%% code
with CommandLog(r) as log:
    r.config_set("notify-keyspace-events", "Ex")
show(r.config_get("notify-keyspace-events"), log, cli=True)
#%% code
expired = PubSubTap(r, patterns=["__keyevent@0__:expired"]).start()
worker = start_worker(settings, name="worker-1", stdout_level="WARNING")
with CommandLog(r) as log, PubSubTap(r) as tap:
    bots = start_players(URL, players=4, games=2, seed=5)
    assert bots.join(60), "the bots did not finish in time"
    assert tap.wait_for(lambda messages: cleaning_tasks(messages) >= 8, timeout=10)
    worker.stop()  # drains: every task published before this call is handled first
    assert worker.join(10)
keys = keys_frame(r)
show(keys, log, title=f"{worker.part.handled} tasks handled; the keys left and their TTLs", max_rows=25)
#%% code
log.summary().query("command in ['EXPIRE', 'ZREM', 'LREM', 'MGET']")
#%% md
Wait for the expiries (at most 15 s; here about 2): each expired key arrives as a message, and
the wait ends when no `games:*` key is left.
#%% code
gone = expired.wait_for(lambda messages: next(r.scan_iter("games:*", count=1000), None) is None, timeout=15)
expired.stop()
print("every game key expired:", gone, "—", len(expired.messages), "expired-key notifications")
pd.Series([m["data"] for m in expired.messages]).str.replace(
    r"[0-9a-f]{8}-[0-9a-f-]{27}", "<token>", regex=True).value_counts().rename("keys expired")
#%% md
## Two workers: both handle every task

Pub/sub delivers each message to **every** subscriber. With two workers listening, each
handles every task: the clean-up is idempotent, so the result is right, but the work is done
twice. (A Redis stream with a consumer group would give each task to one worker.)
#%% code
reset(r)
workers = [start_worker(settings, name=f"worker-{i}", stdout_level="WARNING") for i in (1, 2)]
with CommandLog(r) as log:
    listeners = dict(r.pubsub_numsub("lib.server.lobby"))
show(listeners, log, title="PUBSUB NUMSUB lib.server.lobby", cli=True)
#%% code
with PubSubTap(r) as tap:
    bots = start_players(URL, players=6, games=2, seed=6)
    assert bots.join(60), "the bots did not finish in time"
    assert tap.wait_for(lambda messages: cleaning_tasks(messages) >= 12, timeout=10)
for w in workers:
    w.stop()
assert all(w.join(10) for w in workers)
counts = pd.DataFrame([{"worker": w.name, "tasks published": tap.count(CLEAN), "tasks handled": w.part.handled}
                       for w in workers]).set_index("worker")
assert (counts["tasks handled"] == counts["tasks published"]).all()
counts
#%% code
ax = counts.plot.bar(rot=0, figsize=(6, 3), title="two workers: each one handles every task")
ax.set_ylabel("tasks");
#%% md
## Try it yourself

**Exercise 1.** How many "Cleaning Game Records" tasks does one finished **3-player** game
publish? Put the number in `answer1` (think, or count in `tap.frame()`).
#%% code
answer1 = ...  # your code here
check(answer1, 3, "one task per member of the game");
#%% md
**Exercise 2.** The two workers have stopped. How many clients subscribe to
`lib.server.lobby` now? Ask Redis and put the number in `answer2`.
#%% code
answer2 = ...  # your code here
check(answer2, 0, "r.pubsub_numsub('lib.server.lobby') returns [(channel, count)]");
#%% md
**Exercise 3.** With three workers listening, how many times in all would one task be
handled? Put the number in `answer3`.
#%% code
answer3 = ...  # your code here
check(answer3, 3, "pub/sub gives every message to every subscriber");
#%% md
## Solutions
#%% code
frame = tap.frame()
finished = frame[frame["log_message"].str.startswith("Game Finished")]
members = {t["game_token"]: len(t["members"]) for t in finished["task"]}
tasks = frame.loc[frame["log_message"] == CLEAN, "task"].map(lambda t: t["game_token"]).value_counts()
show(pd.DataFrame({"members": pd.Series(members), "tasks": tasks}), title="one task per member, per game")
answer1 = 3
assert check(answer1, 3)

answer2 = r.pubsub_numsub("lib.server.lobby")[0][1]
assert check(answer2, 0)

answer3 = 3
assert check(answer3, 3)
#%% md
## Clean up
#%% code
for handle in (late, worker, *workers, game_server):  # the workers stopped already; stop() is harmless twice
    handle.stop()
    assert handle.join(10), f"{handle.name} did not stop"
r.close()
redis_server.stop()
game_server, redis_server
'''

# ---------------------------------------------------------------------------------------------
NB05 = r'''
#%% md
# 5 · The article's walkthrough

**What you'll do:** run a small simulation with **no worker**, so every game stays in Redis,
then ask the questions the original article asks with `redis-cli`, answering each in
redis-py and showing the redis-cli line it amounts to.

**What you'll learn:**
- how to find your way in the keyspace from one list (`games:players:2`) to a hero's real name;
- that a redis-py call is one Redis command (the table shows it), so the redis-cli line can be
  read off the table;
- how a pipeline and a transaction look on the server;
- why the worker matters: without it, state grows with every game.

**What you'll need:** notebooks 1 to 3 help. Its own Redis; the run takes a few seconds.

```mermaid
flowchart LR
    L["games:players:2<br/>(list of game tokens)"] -->|"LRANGE … 12 12"| G["game g"]
    G -->|"GET games:g:status"| S["Completed"]
    G -->|"SMEMBERS / SRANDMEMBER games:g"| U["user u"]
    U -->|"HGETALL games:g:superheros:u"| H["hero id, attack, health"]
    H -->|"HGET superheros id"| J["hero JSON<br/>biography.full-name"]
```
#%% code
import json

import pandas as pd
import redis

from simlib.config import Settings
from simlib.explore import redis_games_frame
from simlib.roster import build_db, load_roster
from simlib.runner import simulate
from simlib.store import EmbeddedRedis
from simlib.tutorial import CommandLog, check, keys_frame, show
#%% md
## A run with no worker

Ten bots play five games each (`workers=0`): nothing cleans up. `simulate` starts the game
server and the bots, plays, stops them and returns the bots' records.
#%% code
redis_server = EmbeddedRedis().start()
r = redis.Redis.from_url(redis_server.url, decode_responses=True)
build_db(r, load_roster())
settings = Settings(redis_url=redis_server.url, server_sleep=0.0, lobby_timeout=1.0,
                    websocket_host="127.0.0.1", websocket_port=0)
result = simulate(settings, players=10, games=5, workers=0, seed=2023, progress=False, server_mode="thread")
print(result.report())
#%% md
## How many 2-player games were played?
#%% code
with CommandLog(r) as log:
    two_player_games = r.llen("games:players:2")
show(two_player_games, log, title="r.llen('games:players:2')", cli=True)
#%% md
## Pick one: the thirteenth
#%% code
with CommandLog(r) as log:
    g = r.lrange("games:players:2", 12, 12)[0]
show(g, log, title="r.lrange('games:players:2', 12, 12)[0]", cli=True)
#%% md
## Its status
#%% code
with CommandLog(r) as log:
    status = r.get(f"games:{g}:status")
show(status, log, title="r.get(f'games:{g}:status')", cli=True)
#%% md
If it says `Timed Out` (a lobby nobody else joined within the second, which can happen near
the end of a run), take the first completed game instead, so the questions below make sense.
#%% code
if status != "Completed":
    g = next(t for t in r.lrange("games:players:2", 0, -1) if r.get(f"games:{t}:status") == "Completed")
    status = r.get(f"games:{g}:status")
g, status
#%% md
## Its members, and one of them at random
#%% code
with CommandLog(r) as log:
    members = r.smembers(f"games:{g}")
    u = r.srandmember(f"games:{g}")
show({"SMEMBERS": sorted(members), "SRANDMEMBER": u}, log, title="the members", cli=True)
#%% md
## That member's hero in this game

`health` is what was left at the end: 0 for the loser.
#%% code
with CommandLog(r) as log:
    their_hero = r.hgetall(f"games:{g}:superheros:{u}")
show(their_hero, log, title="r.hgetall(f'games:{g}:superheros:{u}')", cli=True)
#%% md
## The hero's real name

The game's hero hash holds only the id; the roster hash holds the whole record as JSON.
`biography.full-name` is the hero's real name (the roster, like the real API, leaves it blank
or `-` for some heroes).
#%% code
with CommandLog(r) as log:
    record = json.loads(r.hget("superheros", their_hero["id"]))
show({"name": record["name"], "full-name": record["biography"]["full-name"], "biography": record["biography"]},
     log, title="r.hget('superheros', id)", cli=True)
#%% md
## All of it in one round trip

A pipeline sends the commands together and reads the replies together: the server executes
the same commands (the table is the same), but the notebook waits once instead of five times.
With `transaction=True` they are wrapped in `MULTI` … `EXEC` and run with nothing in between.
#%% code
with CommandLog(r) as log:
    pipe = r.pipeline(transaction=True)
    pipe.llen("games:players:2")
    pipe.get(f"games:{g}:status")
    pipe.smembers(f"games:{g}")
    pipe.hgetall(f"games:{g}:superheros:{u}")
    pipe.hget("superheros", their_hero["id"])
    replies = pipe.execute()
show([replies[0], replies[1], sorted(replies[2]), replies[3], "…hero JSON…"], log, title="a transaction", cli=True)
#%% md
## What the run left behind

No worker ran, so every key of every game is still there and none of them expires: the state
grows with every game played. That is what the clean-up worker (notebook 4) is for.
#%% code
with CommandLog(r) as log:
    games = redis_games_frame(r)
show(games.groupby(["participants", "status"]).size().rename("games").reset_index(), log,
     title="redis_games_frame(r), counted", max_rows=15)
#%% code
keys = keys_frame(r)
pd.DataFrame([{"game keys": len(keys), "without expiry": int((keys["ttl"] == -1).sum()),
               "users": r.hlen("users")}])
#%% md
## Try it yourself

**Exercise 1.** How many 3-player games were opened? One command; the number in `answer1`.
#%% code
answer1 = ...  # your code here
check(answer1, len(games.query("participants == 3")), "LLEN games:players:3");
#%% md
**Exercise 2.** Which member of game `g` lost? Put the user token in `answer2`.
#%% code
answer2 = ...  # your code here
check(answer2, lambda a: a in members and r.hget(f"games:{g}:superheros:{a}", "health") == "0",
      "the loser's hero hash has health 0: HGET games:<g>:superheros:<u> health for each member");
#%% md
**Exercise 3.** How many games (2- and 3-player) timed out? Put the number in `answer3`.
#%% code
answer3 = ...  # your code here
check(answer3, int((games["status"] == "Timed Out").sum()),
      "GET each game's status; the game tokens are in games:players:2 and games:players:3");
#%% md
## Solutions
#%% code
answer1 = r.llen("games:players:3")
assert check(answer1, len(games.query("participants == 3")))

answer2 = next(m for m in members if r.hget(f"games:{g}:superheros:{m}", "health") == "0")
assert check(answer2, lambda a: a in members and r.hget(f"games:{g}:superheros:{a}", "health") == "0")

tokens = r.lrange("games:players:2", 0, -1) + r.lrange("games:players:3", 0, -1)
answer3 = sum(1 for t in tokens if r.get(f"games:{t}:status") == "Timed Out")
assert check(answer3, int((games["status"] == "Timed Out").sum()))
#%% md
## Clean up

`simulate` already stopped its server and bots; only Redis is left.
#%% code
r.close()
redis_server.stop()
redis_server
'''

# ---------------------------------------------------------------------------------------------
NB06 = r'''
#%% md
# 6 · Analytics

**What you'll do:** run a larger simulation with a progress bar, then analyse the games with
pandas and matplotlib.

**What you'll learn:**
- how a run comes back as three DataFrames that line up: games, players (one row per player
  and game), attacks;
- win rate against hero attack and health, game length in turns, the damage distribution and
  throughput in games per minute;
- that the bots' records and Redis agree (the game's log list holds the same attacks).

**What you'll need:** notebooks 1 to 5 help. Its own Redis; the run takes a few seconds.

```mermaid
flowchart LR
    SIM["simulate()<br/>server · worker · 20 bots"] -->|records| RES[RunResult]
    RES -->|games_frame| G[games]
    RES -->|players_frame| P[players]
    RES -->|attacks_frame| A[attacks]
    R[("Redis<br/>superheros")] -->|heroes_frame| H[heroes]
    G & P & A & H --> PLOTS["pandas · matplotlib"]
```
#%% code
import json

import matplotlib.pyplot as plt
import pandas as pd
import redis

from simlib import explore
from simlib.config import Settings
from simlib.roster import build_db, load_roster
from simlib.runner import simulate
from simlib.store import EmbeddedRedis
from simlib.tutorial import CommandLog, check, show
#%% md
## The run

Twenty bots play ten games each, with one clean-up worker; the server runs in a thread of this
kernel. The command table counts everything Redis executed during the run.
#%% code
redis_server = EmbeddedRedis().start()
r = redis.Redis.from_url(redis_server.url, decode_responses=True)
build_db(r, load_roster())
settings = Settings(redis_url=redis_server.url, server_sleep=0.0, lobby_timeout=1.0, redis_expiry=300,
                    websocket_host="127.0.0.1", websocket_port=0)
with CommandLog(r, timeout=30) as log:
    result = simulate(settings, players=20, games=10, workers=1, seed=42, progress=True, server_mode="thread")
print(result.report())
show(log.summary(), title=f"{len(log):,} Redis commands during the run, counted")
#%% md
## Three frames that line up

Every frame is built from the bots' records; `game` (a game token) and `user` join them.
#%% code
games = result.games_frame()
players = result.players_frame()
attacks = result.attacks_frame()
print(len(games), "games,", len(players), "player rows,", len(attacks), "attacks")
games.head()
#%% code
players.head()
#%% md
The heroes come from Redis, one `HGETALL`:
#%% code
with CommandLog(r) as log:
    heroes = explore.heroes_frame(r)
show(heroes[["name", "health", "attack"]].head(), log, title="heroes_frame(r)")
#%% md
## The records and Redis agree

The worker set an expiry on the finished games, but they are still there (300 s). The attacks
the bots recorded for one game are exactly the records in its log list.
#%% code
g = games.query("outcome == 'COMPLETE'")["game"].iloc[0]
with CommandLog(r) as log:
    in_redis = [json.loads(text) for text in r.lrange(f"games:{g}:logs", 0, -1)]
from_bots = attacks.query("game == @g")
assert len(in_redis) == len(from_bots)
assert [rec["STATUS"]["DETAILS"]["ENEMY_DAMAGE"] for rec in in_redis] == from_bots["damage"].tolist()
show(explore.attacks_frame(in_redis)[["attacker", "enemy", "damage", "health_post"]], log,
     title=f"games:{g[:8]}…:logs", max_rows=10)
#%% md
## Win rate against attack and health

Only completed games count. Heroes are put into bins by quantile, so each bar has about as
many hero-games; the bar is the share of them that won.
#%% code
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
explore.plot_win_rate(players, heroes, "attack", bins=6, ax=axes[0])
explore.plot_win_rate(players, heroes, "health", bins=6, ax=axes[1])
fig.tight_layout()
#%% code
done = players.query("outcome == 'COMPLETE'").assign(attack=lambda t: t["hero_id"].map(heroes["attack"]),
                                                    health=lambda t: t["hero_id"].map(heroes["health"]))
done.groupby(pd.qcut(done["attack"], 4), observed=True)["won"].agg(["mean", "size"]).rename(
    columns={"mean": "win rate", "size": "hero-games"})
#%% md
## Game length and damage
#%% code
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
explore.plot_game_length(games, ax=axes[0])
explore.plot_damage(attacks, ax=axes[1])
fig.tight_layout()
#%% code
games.query("outcome == 'COMPLETE'").groupby("participants")["turns"].describe()
#%% md
## Games per minute

The run lasts seconds, so the bins are one second wide, scaled to games per minute.
#%% code
ax = explore.plot_games_per_minute(games, freq="1s")
ax.tick_params(axis="x", labelrotation=45)
#%% md
## Try it yourself

**Exercise 1.** Which hero (by name) won the most games? Put the name in `answer1` (a tie
counts as right).
#%% code
answer1 = ...  # your code here
counts = games["winner_hero_name"].value_counts()
check(answer1, lambda a: counts.get(a, 0) == counts.max(), "value_counts() of games['winner_hero_name']");
#%% md
**Exercise 2.** What is the median length, in turns, of completed 2-player games?
#%% code
answer2 = ...  # your code here
check(answer2, float(games.query("outcome == 'COMPLETE' and participants == 2")["turns"].median()),
      "filter games on outcome and participants, then .median() of turns");
#%% md
**Exercise 3.** What share of all attacks killed their target (a number between 0 and 1)?
#%% code
answer3 = ...  # your code here
check(answer3, float(attacks["killed"].mean()), "attacks['killed'] is True when health_post is 0");
#%% md
## Solutions
#%% code
answer1 = games["winner_hero_name"].value_counts().idxmax()
assert check(answer1, lambda a: counts.get(a, 0) == counts.max())

answer2 = games[(games["outcome"] == "COMPLETE") & (games["participants"] == 2)]["turns"].median()
assert check(answer2, float(games.query("outcome == 'COMPLETE' and participants == 2")["turns"].median()))

answer3 = (attacks["health_post"] == 0).sum() / len(attacks)
assert check(answer3, float(attacks["killed"].mean()))
#%% md
## Clean up

`simulate` stopped its server, worker and bots; only Redis is left.
#%% code
r.close()
redis_server.stop()
redis_server
'''

# ---------------------------------------------------------------------------------------------
NB07 = r'''
#%% md
# 7 · Scaling

**What you'll do:** run the same simulation with more and more players, then with two game
servers (threads, then processes), and measure throughput and Redis command counts.

**What you'll learn:**
- how to count every command the server ran with `INFO commandstats` (cheap, unlike `MONITOR`);
- that the Redis work per attack is constant: commands grow linearly with the games played;
- that one game's players may sit on different servers (servers share game events through
  Redis pub/sub);
- where the bottleneck is on a small machine (hint: not Redis).

**What you'll need:** notebooks 4 to 6 help. Its own Redis. About 15 seconds.

```mermaid
flowchart LR
    B["bots (a thread)<br/>bot i → server i mod 2"] --> S1[server 0]
    B --> S2[server 1]
    S1 <-->|"EVALSHA · PUBLISH simlib:events"| R[("Redis")]
    S2 <-->|"EVALSHA · PUBLISH simlib:events"| R
    R -->|lib.server.lobby| W[worker]
    R -.->|"INFO commandstats"| NB[this notebook]
```
#%% code
import matplotlib.pyplot as plt
import pandas as pd
import redis

from simlib.config import Settings
from simlib.roster import build_db, load_roster
from simlib.runner import simulate
from simlib.store import EmbeddedRedis
from simlib.tutorial import CommandLog, check, commandstats_frame, reset, show
#%% md
## Redis and a measured run

Every run starts from a clean slate: `reset` removes the previous run's keys and
`CONFIG RESETSTAT` zeroes the server's counters; afterwards `INFO commandstats` tells how often
each command ran (those run inside Lua scripts included). All bots play 2-player games only
(`two_share=1.0`), so lobbies fill fast. Near the end of a run a bot may still wait alone for a
partner until its lobby times out, so throughput is measured from the first to the last attack.
#%% code
redis_server = EmbeddedRedis().start()
r = redis.Redis.from_url(redis_server.url, decode_responses=True)
build_db(r, load_roster())
settings = Settings(redis_url=redis_server.url, server_sleep=0.0, lobby_timeout=1.0,
                    websocket_host="127.0.0.1", websocket_port=0)
runs, stats = [], {}


def measured_run(players, servers=1, mode="thread", games=6, style="fast"):
    """One run from a clean slate; returns its row (and keeps its command counts in ``stats``)."""
    reset(r)
    r.config_resetstat()
    result = simulate(settings, players=players, games=games, workers=1, servers=servers, seed=7,
                      progress=False, server_mode=mode, two_share=1.0, style=style)
    s = result.summary()
    attacks = result.attacks_frame()
    busy = (attacks["time"].max() - attacks["time"].min()).total_seconds()  # first to last attack
    counted = commandstats_frame(r)
    label = f"{players} players, {servers} {mode} server{'s' if servers > 1 else ''}" + (f", {style} bots" if style != "fast" else "")
    stats[label] = counted.set_index("command")["calls"]
    row = {"run": label, "players": players, "servers": servers, "mode": mode, "seconds": s["seconds"],
           "games": s["games"], "timed out": s["timed_out"], "attacks": s["attacks"],
           "attacks/s": round(s["attacks"] / busy, 1), "commands": int(counted["calls"].sum()),
           "connections per server": result.server_connections}
    runs.append(row)
    return row


with CommandLog(r) as log:
    reset(r)
    r.config_resetstat()
    before = commandstats_frame(r)
show(before, log, title="INFO commandstats right after CONFIG RESETSTAT", max_rows=10)
#%% md
## More players, one server
#%% code
for players in (2, 4, 8, 16, 32):
    measured_run(players)
pd.DataFrame(runs).set_index("run")
#%% md
## The work per attack is constant

Doubling the players doubles the games, and the commands with them: what one attack costs
Redis does not depend on how many games run at once. Games differ in length, so the commands
line up with the attacks, not with the games. Below right, the biggest run's commands per
attack: `EVALSHA` is one per login, join and action; the Lua-internal commands (`HGET`,
`SISMEMBER`, `LINDEX` …) follow from it; `HGETALL` is the bots looking at the enemies' heroes;
`PUBLISH` carries the log records and the game events.
#%% code
table = pd.DataFrame(runs)
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
axes[0].plot(table["attacks"], table["commands"], marker="o")
axes[0].set_xlabel("attacks in the run")
axes[0].set_ylabel("Redis commands (INFO commandstats)")
axes[0].set_title("commands grow linearly with attacks")
per_attack = (stats[table["run"].iloc[-1]] / table["attacks"].iloc[-1]).sort_values(ascending=False).head(12)
per_attack.plot.barh(ax=axes[1], color="tab:purple")
axes[1].invert_yaxis()
axes[1].set_xlabel("commands per attack")
axes[1].set_title(table["run"].iloc[-1])
fig.tight_layout()
#%% md
## Two servers

Bot *i* talks to server *i* mod 2, so the two players of a game are often on different servers.
That works because a server learns about a game's events (start, turn, end) from Redis pub/sub
(`simlib:events`), not from its own memory. First with both servers as threads of this kernel
(one Python process: they share one core), then as two processes.
#%% code
measured_run(32, servers=2, mode="thread")
measured_run(32, servers=2, mode="process")
pd.DataFrame(runs).set_index("run").tail(3)
#%% md
## One connection per player: the v2 session protocol

So far the bots speak protocol v1 (kept-open connections, `style="fast"`): a player opens a
new lobby connection for every game, and the server reads the game's state when the lobby
connects. The v2 session protocol (`/api/v2/session`, see `docs/protocol.md`) keeps one
connection for a player's whole life: it logs in once, and each turn notice names the living
enemies, so a turn is a single round trip. The same 32 players with v2 bots, on one server:
#%% code
measured_run(32, style="v2")
table = pd.DataFrame(runs).set_index("run")
table["commands per attack"] = (table["commands"] / table["attacks"]).round(1)
table.loc[["32 players, 1 thread server", "32 players, 1 thread server, v2 bots"],
          ["attacks", "attacks/s", "commands", "commands per attack"]]
#%% md
Redis does about the same work per attack either way: the same scripts change the same keys
(v2 only skips the lobby's state read and the hero look-ups). What v2 saves is Python work on
both ends of the WebSockets (no new connection per game, no hero requests), so the same CPU
plays more attacks per second. `simlib bench` measures this at full scale.
#%% code
table = pd.DataFrame(runs)
ax = table.plot.barh(x="run", y="attacks/s", legend=False, figsize=(8, 3.5), color="tab:blue",
                     title="throughput (attacks per second)")
ax.invert_yaxis()
ax.set_xlabel("attacks per second");
#%% md
What to look for: throughput stays in the same range however many players there are. The
work per attack is fixed, and on a small machine the limit is the CPU time of Python (bots,
servers and worker share the cores, and threads of one process share one interpreter), not
Redis. Servers in processes take their work out of this kernel's process; more of anything
only helps while there are free cores. Redis itself spends microseconds per command: its own
view of its time, from the last run:
#%% code
biggest = commandstats_frame(r)
show(biggest.head(10), title="INFO commandstats after the last run: usec per call stays tiny")
#%% md
## Try it yourself

**Exercise 1.** In the last run, how many Redis commands did one attack cost, on average?
Divide the run's commands by its attacks; put the number in `answer1` (within 1 %).
#%% code
answer1 = ...  # your code here
last = pd.DataFrame(runs).iloc[-1]
check(answer1, lambda a: abs(a - last["commands"] / last["attacks"]) <= 0.01 * last["commands"] / last["attacks"],
      "pd.DataFrame(runs).iloc[-1] has 'commands' and 'attacks'");
#%% md
**Exercise 2.** Which command did Redis run most often in the last run? Its name, upper case,
in `answer2`.
#%% code
answer2 = ...  # your code here
check(answer2, biggest["command"].iloc[0], "commandstats_frame(r) is sorted by calls");
#%% md
## Solutions
#%% code
answer1 = last["commands"] / last["attacks"]
assert check(answer1, lambda a: abs(a - last["commands"] / last["attacks"]) <= 0.01 * last["commands"] / last["attacks"])

answer2 = commandstats_frame(r).sort_values("calls", ascending=False)["command"].iloc[0]
assert check(answer2, biggest["command"].iloc[0])
#%% md
## Clean up

Every `simulate` stopped its servers (threads and processes), worker and bots; only Redis is
left.
#%% code
r.close()
redis_server.stop()
redis_server
'''

# ---------------------------------------------------------------------------------------------
NB08 = r'''
#%% md
# 8 · Scaling out: a load balancer and a Redis Cluster

**What you'll do:** run the compose deployment's layout on this machine: three game server
processes behind nginx (the load balancer of `compose/`), bots connecting through it, and
count the connections each server took. Then start a 3-node Redis Cluster, play a simulation
on it and see where its keys went.

**What you'll learn:**
- how nginx hands each new WebSocket connection to one of the servers, and why any server can
  serve any player (game events travel over Redis pub/sub, not through the server's memory);
- how a Redis Cluster splits the keys over its nodes: 16,384 hash slots, a key's slot is a
  CRC16 of its name (or of the part in `{braces}`, its hash tag), each node serves a range;
- why one game's keys are named `games:{<g>}:…` on a cluster: one slot, one node, so a Lua
  script may touch them all;
- why joining a game takes two atomic steps on a cluster, one per slot.

**What you'll need:** notebooks 2, 4 and 7 help. nginx for the first part (Debian/Ubuntu:
`apt-get install nginx-light`; macOS: `brew install nginx`); without it the bots connect to the
servers directly and the notebook goes on. Its own Redis and its own cluster. About 10 seconds.

```mermaid
flowchart LR
    B["bots (a thread)"] -->|"one address: ws://127.0.0.1:port"| N["nginx<br/>compose/nginx.conf"]
    N --> S0[server 0]
    N --> S1[server 1]
    N --> S2[server 2]
    S0 <-->|"EVALSHA · simlib:events"| R[("Redis")]
    S1 <--> R
    S2 <--> R
    SIM["simulate()<br/>REDIS_CLUSTER=1"] --> C0[("node 0<br/>slots 0–5460")]
    SIM --> C1[("node 1<br/>slots 5461–10922")]
    SIM --> C2[("node 2<br/>slots 10923–16383")]
```
#%% code
import difflib

import matplotlib.pyplot as plt
import pandas as pd
import redis
from redis.crc import key_slot

from simlib.balancer import NGINX_CONF, nginx_available, start_nginx, upstream_port
from simlib.config import Settings
from simlib.keys import EVENTS_CHANNEL, LOBBY_CHANNEL
from simlib.launch import start_players, start_server
from simlib.roster import build_db, load_roster
from simlib.runner import simulate
from simlib.store import EmbeddedCluster, EmbeddedRedis
from simlib.tutorial import CommandLog, PubSubTap, check, find, keys_frame, login, show
#%% md
## Part 1 · Three servers behind nginx

Redis, the roster, and three game servers, each a process of its own (`mode="process"`, as
the compose file's `--scale superhero_server=3` runs three containers). Each server subscribes
once to `simlib:events`: that is how a server hears of a turn played through another server.
#%% code
redis_server = EmbeddedRedis().start()
r = redis.Redis.from_url(redis_server.url, decode_responses=True)
build_db(r, load_roster())
settings = Settings(redis_url=redis_server.url, server_sleep=0.0, lobby_timeout=1.0,
                    websocket_host="127.0.0.1", websocket_port=0)
servers = [start_server(settings, port=0, mode="process", name=f"server-{i}", stdout_level="WARNING")
           for i in range(3)]
ports = [s.port for s in servers]
with CommandLog(r) as log:
    listeners = dict(r.pubsub_numsub(EVENTS_CHANNEL))
show(listeners, log, title=f"servers on ports {ports}: subscribers of {EVENTS_CHANNEL}", cli=True)
#%% md
## nginx in front

`start_nginx` copies `compose/nginx.conf`, the template Docker Compose mounts into the nginx
container, and changes four lines: `listen` (a free port of this machine); `resolver` and
`set $superhero_server`, which look the servers up in the container engine's DNS (an `upstream`
block of the three loopback servers instead); and `access_log` (a file with the fields read below, plus temp
folders nginx may write to). Everything else, the WebSocket upgrade headers and the hour-long
timeouts for quiet lobby connections, is the compose deployment's. The diff shows exactly what
changed.

If nginx is not installed, the cell says so and the bots connect to the servers directly,
bot *i* to server *i* mod 3, as in notebook 7.
#%% code
if nginx_available():
    balancer = start_nginx(ports)
    urls = balancer.url
    print(f"nginx listens on {balancer.url} and hands each new connection to one of the ports {ports}\n")
    compose_lines, rendered_lines = NGINX_CONF.read_text().splitlines(True), balancer.conf.read_text().splitlines(True)
    print("".join(difflib.unified_diff(compose_lines, rendered_lines, "compose/nginx.conf", "rendered for this machine",
                                       n=0)))
else:
    balancer = None
    urls = [s.url for s in servers]
    print("nginx is NOT installed here (Debian/Ubuntu: apt-get install nginx-light; macOS: brew install nginx).\n"
          "No load balancer in this run: the bots connect to the three servers directly (bot i → server i mod 3).\n"
          "Everything below still runs; the column 'nginx sent' stays empty.")
#%% md
## Bots through one address

Twelve bots play three games each. With nginx they all know a single address, as the
compose file's `player` containers know only `nginx:5678`. A tap on `lib.server.lobby` is
started first: each server reports its counts there when it stops.
#%% code
tap = PubSubTap(r, LOBBY_CHANNEL).start()
bots = start_players(urls, players=12, games=3, seed=8)
assert bots.join(60), "the bots did not finish in time"
assert not bots.failures and not bots.recorder.errors, bots.recorder.errors[:3]
played = pd.DataFrame(bots.recorder.games)
print(f"{played['game'].nunique()} games, {len(bots.recorder.attacks)} attacks, no bot errors")
played.groupby("outcome")["game"].nunique().rename("games")
#%% md
## What each server did

Stopping a server makes it publish one last record on `lib.server.lobby`, "Server … stopping",
whose `task` holds its port, how many connections it accepted and how many attacks it
handled. The table on the right shows the three `PUBLISH` commands.
#%% code
def stop_reports(messages):
    """The servers' "Server … stopping" records among the tapped messages."""
    return [m["json"]["task"] for m in messages if isinstance(m["json"], dict)
            and str(m["json"].get("log_message", "")).startswith("Server ")
            and "connections" in (m["json"].get("task") or {})]


with CommandLog(r) as log:
    for s in servers:
        s.stop()
    assert all(s.join(15) for s in servers), "a server did not stop"
    assert tap.wait_for(lambda messages: len(stop_reports(messages)) == 3, timeout=15)
tap.stop()
reports = pd.DataFrame(stop_reports(tap.messages)).set_index("port").loc[ports]
show(reports[["connections", "attacks"]], log, title="each server's report as it stopped (by port)")
#%% md
nginx writes one access-log line per connection when the connection closes; stopped
gracefully (`stop()` sends SIGQUIT), it finishes and logs every open one first. Each line
says which server (`upstream`) got the connection and on which route (`uri`).
#%% code
if balancer is not None:
    balancer.stop()
    assert balancer.join(15), "nginx did not stop"
    access = pd.DataFrame(balancer.entries())
    access["server"] = access["upstream"].map(upstream_port)
    nginx_sent = access.groupby("server").size()
    routes = pd.crosstab(access["uri"], access["server"], margins=True, margins_name="all")
else:
    access, nginx_sent, routes = None, pd.Series(dtype=int), "no nginx: no access log"
per_server = pd.DataFrame({"connections (server's count)": reports["connections"],
                           "nginx sent": nginx_sent.reindex(ports), "attacks": reports["attacks"]})
per_server.index.name = "server port"
per_server
#%% code
routes
#%% code
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
per_server["connections (server's count)"].plot.bar(ax=axes[0], rot=0, color="tab:blue",
                                                    title="connections per server")
per_server["attacks"].plot.bar(ax=axes[1], rot=0, color="tab:red", title="attacks handled per server")
axes[0].set_ylabel("connections")
axes[1].set_ylabel("attacks")
fig.tight_layout()
#%% md
What to look for: the servers' own counts equal what nginx sent them, and nginx's round-robin
gives each server a third of the connections. The route table shows how the bots connect: each
keeps one connection per route (login, find, hero, action) for its whole life, and opens a new
lobby connection for every game (12 bots, 3 games each: 36 lobbies). So the attacks are less
even: all of a bot's attacks go to the server that holds its action connection. And the players
of one game wait for their turns in lobby connections on different servers. That works because
every state change is a Lua script in the shared Redis, and every turn notice comes from a
`simlib:events` message that all three servers hear.

## Part 2 · A Redis Cluster

`EmbeddedCluster(3)` starts three Valkey servers in cluster mode on loopback and gives each a
third of the 16,384 hash slots. `CLUSTER SLOTS` asks any node for the map.
#%% code
cluster = EmbeddedCluster(3).start()
nodes = [redis.Redis(port=node.port, decode_responses=True) for node in cluster.nodes]
node_of_port = {node.port: i for i, node in enumerate(cluster.nodes)}
with CommandLog(nodes[0]) as log:
    slot_map = nodes[0].execute_command("CLUSTER", "SLOTS")
ranges = [{"node": node_of_port[int(where[1])], "port": int(where[1]), "first slot": first, "last slot": last}
          for first, last, where, *replicas in slot_map]
slots = pd.DataFrame(ranges).set_index("node").sort_index()
show(slots, log, title="CLUSTER SLOTS: which node serves which slots", cli=True)
#%% code
def node_of(key):
    """The node (0, 1 or 2) that serves ``key``: its slot, looked up in the slot map."""
    slot = key_slot(key.encode())
    return int(slots.index[(slots["first slot"] <= slot) & (slot <= slots["last slot"])][0])
#%% md
## A key's slot

`redis.crc.key_slot` computes a slot the way the server does: CRC16 of the key, modulo 16,384.
When the key has a non-empty `{…}`, only that part is hashed: that is a **hash tag**, and
keys with the same tag always share a slot. The server agrees (`CLUSTER KEYSLOT`).
#%% code
examples = ["superheros", "users", "games:players:2", "games:abc:status", "games:{abc}:status", "games:{abc}:logs",
            "abc"]
with CommandLog(nodes[0]) as log:
    server_says = [nodes[0].cluster("keyslot", key) for key in examples]
keyslots = pd.DataFrame({"key": examples, "key_slot (Python)": [key_slot(k.encode()) for k in examples],
                         "CLUSTER KEYSLOT": server_says, "node": [node_of(k) for k in examples]})
show(keyslots, log, title="slots of a few keys", cli=True)
#%% md
## A simulation on the cluster

`Settings(redis_cluster=True)` (`REDIS_CLUSTER=1` in the environment) switches every per-game
key to its hash-tagged form, `games:{<g>}:…`, and every client to a cluster client that sends
each command to the node serving its key (`REDIS_URL` names any node). No worker runs, so
every key stays. The counters are reset first, so that each node's `INFO commandstats` tells
how much of the run's work it did.
#%% code
cluster_settings = Settings(redis_url=cluster.url, redis_cluster=True, server_sleep=0.0, lobby_timeout=1.0,
                            websocket_host="127.0.0.1", websocket_port=0)
for node in nodes:
    node.config_resetstat()
result = simulate(cluster_settings, players=12, games=3, workers=0, seed=8, progress=False, server_mode="thread")
print(result.report())
#%% md
## Keys and work per node
#%% code
node_keys = {i: sorted(node.scan_iter(count=1000)) for i, node in enumerate(nodes)}
per_node = pd.DataFrame([{"node": i, "port": cluster.nodes[i].port,
                          "game keys games:{…}:…": sum(k.startswith("games:{") for k in keys),
                          "other keys": sum(not k.startswith("games:{") for k in keys),
                          "commands run": sum(v["calls"] for v in nodes[i].info("commandstats").values())}
                         for i, keys in node_keys.items()]).set_index("node")
per_node
#%% code
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
per_node[["game keys games:{…}:…", "other keys"]].plot.bar(ax=axes[0], stacked=True, rot=0, title="keys per node")
per_node["commands run"].plot.bar(ax=axes[1], rot=0, color="tab:purple", title="commands per node during the run")
axes[0].set_ylabel("keys")
axes[1].set_ylabel("commands (INFO commandstats)")
fig.tight_layout()
#%% md
The games spread over the three nodes, since a game's slot comes from its random token; the
few global keys sit wherever their names hash to (below). The commands follow the keys: a
join or an attack runs on the node of its game.

## One game lives on one node

Take a completed game and look for its keys on every node: they are all on one node, and all
in one slot, because they all carry the game token as their hash tag.
#%% code
g = result.games_frame().query("outcome == 'COMPLETE'")["game"].iloc[0]
home = node_of(f"games:{{{g}}}:status")
with CommandLog(nodes[home]) as log:
    game_keys = keys_frame(nodes[home], f"games:{{{g}}}*", width=50)
game_keys.insert(1, "slot", [key_slot(k.encode()) for k in game_keys["key"]])
elsewhere = [k for i, keys in node_keys.items() if i != home for k in keys if f"{{{g}}}" in k]
assert game_keys["slot"].nunique() == 1 and not elsewhere
show(game_keys, log, title=f"node {home}: every key of game {g[:8]}…, slot {key_slot(g.encode())}; "
                           f"on the other nodes: {len(elsewhere)}", max_rows=12)
#%% md
## Where the global keys live

The keys every game shares keep their plain names, so they fall wherever their slot falls.
Below, each is read on its own node, with every node watched by a `CommandLog` of its own;
`cluster_table` puts the three tables together in execution order.
#%% code
def cluster_table(*logs):
    """The CommandLogs of nodes 0, 1, 2 … as one table, in execution order (one clock: the
    nodes all run on this machine)."""
    parts = [log.table().assign(node=i, time=[e["time"] for e in log.entries]) for i, log in enumerate(logs)]
    table = pd.concat(parts).sort_values("time", kind="stable")
    table["ms"] = ((table["time"] - table["time"].min()) * 1000).round(2)
    return table[["ms", "node", "who", "command"]].reset_index(drop=True)


global_keys = ["superheros", "users", "games:players:2", "games:players:3", "games:participants"]
rows = []
with CommandLog(nodes[0]) as log0, CommandLog(nodes[1]) as log1, CommandLog(nodes[2]) as log2:
    for key in global_keys:
        node = nodes[node_of(key)]
        kind = node.type(key)
        size = {"hash": node.hlen, "list": node.llen, "zset": node.zcard}[kind](key)
        rows.append({"key": key, "slot": key_slot(key.encode()), "node": node_of(key), "type": kind, "size": size})
show(pd.DataFrame(rows), title="the global keys")
cluster_table(log0, log1, log2)
#%% md
A plain client that asks the wrong node gets no value but a redirection, `MOVED <slot>
<address of the right node>`, and the node runs nothing (so `MONITOR` shows nothing). A
cluster client (`redis.cluster.RedisCluster`, which the servers use) follows the redirection
and keeps the slot map, so it asks the right node from then on.
#%% code
wrong = (node_of("games:players:2") + 1) % 3
try:
    nodes[wrong].llen("games:players:2")
except redis.exceptions.ResponseError as exc:
    moved = exc
print(f"node {wrong} answers LLEN games:players:2 with {type(moved).__name__}: {moved}")
print(f"slot {key_slot(b'games:players:2')} is served by node {node_of('games:players:2')}, "
      f"port {cluster.nodes[node_of('games:players:2')].port}")
#%% md
## Joining a game takes two steps on a cluster

A Lua script (like a `MULTI`) may only touch keys of one slot. On one Redis, a join is one
script over `games:players:<n>` and the game's keys; on a cluster they sit in different slots,
so the join is two atomic steps (`docs/keyspace.md` tells the whole story):

1. `cluster_seat.lua`, in the slot of `games:players:<n>`, takes a seat in the open lobby, or
   opens one. The seat count is in `{games:players:<n>}:open`, whose hash tag puts it beside
   the list; it is deleted when the lobby fills or times out.
2. `cluster_join.lua`, in the game's slot, adds the member and a hero (from candidates the
   server drew from `superheros`, yet another slot) and starts the game when the last seat is
   taken.

A lobby never gets more members than seats, because only step 1 hands seats out. Below,
alice asks a game server on the cluster for a 2-player game while every node is watched.
#%% code
cluster_server = start_server(cluster_settings, port=0, stdout_level="WARNING")
alice = login(cluster_server.url, "alice")["PAYLOAD"]["USER_TOKEN"]
with CommandLog(nodes[0]) as log0, CommandLog(nodes[1]) as log1, CommandLog(nodes[2]) as log2:
    joined = find(cluster_server.url, alice, 2)
new_game = joined["PAYLOAD"]["GAME_TOKEN"]
show(joined, title=f"alice's find: game {new_game[:8]}…, whose keys are on node {node_of(f'games:{{{new_game}}}')}")
cluster_table(log0, log1, log2)
#%% md
Read it from the top (the `who` column: the game server's connection, or `lua (script)`):
on the node of `games:players:2`, `EVALSHA` of the seat script, whose `RPUSH` and `HSET` open a
new lobby (none was open); the server's first join also reads the roster once (`HGETALL
superheros`) to draw hero candidates from. Then, on the game's node, the join script's `SET`,
`SADD` and `HSET` on `games:{<g>}:…` keys; then `ZINCRBY games:participants` on that key's node.
Last, the server's log record "Player Joined Game" goes out with a `PUBLISH` on the node it is
connected to: on a cluster, a message published on any node reaches the subscribers of all.
#%% md
## Try it yourself

**Exercise 1.** In part 1, which server handled the most attacks? Put its port (an `int`)
in `answer1`.
#%% code
answer1 = ...  # your code here
check(answer1, lambda a: reports["attacks"].get(a) == reports["attacks"].max(),
      "reports has one row per server port, with an 'attacks' column");
#%% md
**Exercise 2.** Which cluster node (0, 1 or 2) holds the `users` hash? Work it out with
`key_slot` and the `slots` table, and put the node number in `answer2`. The check asks that
node.
#%% code
answer2 = ...  # your code here
check(answer2, lambda a: a in (0, 1, 2) and nodes[a].exists("users") == 1,
      "key_slot(b'users'), then the row of slots whose range holds it");
#%% md
**Exercise 3.** Without looking at any key of game `g`: in which slot is `games:{<g>}:logs`?
Compute it from the game token alone and put it in `answer3`.
#%% code
answer3 = ...  # your code here
check(answer3, key_slot(f"games:{{{g}}}:logs".encode()), "only the hash tag (the part in braces) is hashed");
#%% md
## Solutions
#%% code
answer1 = int(reports["attacks"].idxmax())
assert check(answer1, lambda a: reports["attacks"].get(a) == reports["attacks"].max())

slot = key_slot(b"users")
answer2 = int(slots.index[(slots["first slot"] <= slot) & (slot <= slots["last slot"])][0])
assert check(answer2, lambda a: a in (0, 1, 2) and nodes[a].exists("users") == 1)

answer3 = key_slot(g.encode())
assert check(answer3, key_slot(f"games:{{{g}}}:logs".encode()))
#%% md
## Clean up

The part 1 servers have stopped already, `simulate` stopped its own, and nginx has stopped
(`close()` would also kill it if it hung). Left: the cluster's game server, the cluster and
Redis.
#%% code
cluster_server.stop()
assert cluster_server.join(10), "the cluster's game server did not stop"
if balancer is not None:
    balancer.close()
for client in (r, *nodes):
    client.close()
cluster.stop()
redis_server.stop()
cluster_server, balancer, redis_server
'''

NOTEBOOKS = {
    "01_heroes_in_redis.ipynb": NB01,
    "02_login_and_lobby.ipynb": NB02,
    "03_combat_turn_by_turn.ipynb": NB03,
    "04_pubsub_and_worker.ipynb": NB04,
    "05_article_walkthrough.ipynb": NB05,
    "06_analytics.ipynb": NB06,
    "07_scaling.ipynb": NB07,
    "08_scaling_out.ipynb": NB08,
}


def cells(source: str) -> list[tuple[str, str]]:
    """``[(kind, text)]`` from a source with ``#%% md`` / ``#%% code`` separator lines."""
    out: list[tuple[str, list[str]]] = []
    for line in source.strip("\n").splitlines():
        if line in ("#%% md", "#%% code"):
            out.append((line.split()[1], []))
        elif out:
            out[-1][1].append(line)
        elif line.strip():
            raise ValueError(f"text before the first cell marker: {line!r}")
    return [(kind, "\n".join(lines).strip("\n")) for kind, lines in out]


def notebook(name: str, source: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    stem = name.split("_", 1)[0]
    for i, (kind, text) in enumerate(cells(source)):
        cell_id = f"nb{stem}-{i:02d}"
        if kind == "md":
            nb.cells.append(nbformat.v4.new_markdown_cell(text, id=cell_id))
        else:
            nb.cells.append(nbformat.v4.new_code_cell(text, id=cell_id))  # no outputs, no count
    nbformat.validate(nb)
    return nb


def render(name: str) -> str:
    return nbformat.writes(notebook(name, NOTEBOOKS[name])) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a stored notebook differs")
    args = parser.parse_args(argv)
    stale = []
    for name in NOTEBOOKS:
        path = HERE / name
        text = render(name)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("out of date (run python notebooks/_build.py):", ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
