"""protocol.parse per route (pure), and the attack record's bytes against the Lua script's."""

from __future__ import annotations

import json
import uuid

import pytest

from simlib import game as rules
from simlib import protocol as P
from simlib.scripts import load_script
from v1play import Game, action_frame, attack, hero_hash, order, play, start_game

# fixed tokens: test ids must be the same in every pytest-xdist worker
U1, U2, G = (str(uuid.UUID(int=i, version=4)) for i in (1, 2, 3))

#: A valid payload per route, and the exact "MISSING ... IN PAYLOAD" text of each field.
VALID = {
    P.LOGIN: {"USER": "USER007"},
    P.FIND: {"USER_TOKEN": U1, "PARTICIPANTS": 2},
    P.LOBBY: {"GAME_TOKEN": G, "USER_TOKEN": U1},
    P.HERO: {"GAME_TOKEN": G, "USER_TOKEN": U1},
    P.ACTION: {"GAME_TOKEN": G, "USER_TOKEN": U1, "ENEMY_TOKEN": U2, "ACTION": "ATTACK"},
}
MISSING = {
    "USER": "MISSING USER IN PAYLOAD",
    "USER_TOKEN": "MISSING USER TOKEN IN PAYLOAD",
    "GAME_TOKEN": "MISSING GAME TOKEN IN PAYLOAD",
    "PARTICIPANTS": "MISSING PARTICIPANTS IN PAYLOAD",
    "ENEMY_TOKEN": "MISSING ENEMY TOKEN IN PAYLOAD",
    "ACTION": "MISSING ACTION IN PAYLOAD",
}
ROUTES = list(VALID)
TOKEN_FIELDS = [(route, f) for route, payload in VALID.items() for f in payload if f.endswith("_TOKEN")]
NOT_TOKENS = ["*", "?", "%", "games:*", "[0-9a-f]*", "????????-????-????-????-????????????",
              U1 + "*", U1[:-1], "not-a-uuid", " " + U1, 123, 1.5, True, [U1], {"t": U1}]


def rejected(route: str, text) -> dict:
    with pytest.raises(P.ProtocolError) as info:
        P.parse(route, text)
    return info.value.frame


def with_payload(route: str, **changes) -> str:
    return json.dumps({"PAYLOAD": {**VALID[route], **changes}})


def assert_error(frame: dict, status: str) -> None:
    """A rejection beyond the MISSING ones: STATUS, an empty PAYLOAD and ERROR {CODE, MESSAGE}."""
    assert set(frame) == {"PAYLOAD", "STATUS", "ERROR"}, frame
    assert frame["PAYLOAD"] == {} and frame["STATUS"] == status, frame
    assert set(frame["ERROR"]) == {"CODE", "MESSAGE"}, frame
    code, message = frame["ERROR"]["CODE"], frame["ERROR"]["MESSAGE"]
    assert isinstance(code, str) and code and code == code.upper(), frame
    assert isinstance(message, str) and message, frame


# -- valid requests -------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_valid_request_parses_to_its_fields(route):
    """A complete, valid request parses to exactly the route's fields, values unchanged."""
    assert P.parse(route, json.dumps({"PAYLOAD": VALID[route]})) == VALID[route]


@pytest.mark.parametrize("route", ROUTES)
def test_extra_fields_are_ignored(route):
    """Fields a route does not need (and extra top-level keys) do not reject a request."""
    text = json.dumps({"PAYLOAD": {**VALID[route], "EXTRA": [1, 2]}, "OTHER": None})
    assert P.parse(route, text) == VALID[route]


# -- the exact MISSING texts -------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_missing_payload_is_the_exact_two_key_frame(route):
    """A frame without PAYLOAD gets exactly {"PAYLOAD": {}, "STATUS": "MISSING PAYLOAD IN MESSAGE"}."""
    for text in ("{}", json.dumps({"payload": VALID[route]}), json.dumps({"USER": "x"})):
        assert rejected(route, text) == {"PAYLOAD": {}, "STATUS": "MISSING PAYLOAD IN MESSAGE"}


@pytest.mark.parametrize(("route", "field"), [(r, f) for r, p in VALID.items() for f in p])
def test_missing_field_is_the_exact_two_key_frame(route, field):
    """A payload lacking one needed field gets exactly {"PAYLOAD": {}, "STATUS": "MISSING <FIELD> IN PAYLOAD"}."""
    payload = {k: v for k, v in VALID[route].items() if k != field}
    frame = rejected(route, json.dumps({"PAYLOAD": payload}))
    assert frame == {"PAYLOAD": {}, "STATUS": MISSING[field]}


# -- frames that are not a request ---------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("text", ['{"PAYLOAD": ', "", "   ", "nope", "{'PAYLOAD': {}}", '{"PAYLOAD": {}} x',
                                  "[" * 5000 + "]" * 5000, '{"PAYLOAD": ' + "[" * 5000 + "]" * 5000 + "}"],
                         ids=["truncated", "empty", "blank", "word", "single-quotes", "trailing", "deep-array",
                              "deep-payload"])
def test_malformed_json_is_rejected(route, text):
    """Text that is not JSON (or nests too deep to decode) is MALFORMED JSON, never an exception."""
    assert_error(rejected(route, text), "MALFORMED JSON")


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("text", ["[]", "[{}]", '"PAYLOAD"', "3", "null", "true"])
def test_non_object_message_is_rejected(route, text):
    """A JSON value that is not an object is INVALID MESSAGE."""
    assert_error(rejected(route, text), "INVALID MESSAGE")


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("payload", [None, [], [VALID[P.LOGIN]], "USER", 7, True])
def test_non_object_payload_is_rejected(route, payload):
    """A PAYLOAD that is not an object is INVALID PAYLOAD."""
    assert_error(rejected(route, json.dumps({"PAYLOAD": payload})), "INVALID PAYLOAD")


@pytest.mark.parametrize("route", ROUTES)
def test_binary_frame_is_rejected(route):
    """A binary frame is refused (requests are JSON text)."""
    assert_error(rejected(route, json.dumps({"PAYLOAD": VALID[route]}).encode()), "BINARY FRAME")


# -- field values --------------------------------------------------------------------------


@pytest.mark.parametrize("user", ["", "x" * 65, "a\nb", "tab\there", "nul\x00", "bell\x07", "zero\u200bwidth",
                                  "\ud800", 42, None, True, ["USER007"], {"name": "x"}],
                         ids=["empty", "65-chars", "newline", "tab", "nul", "bell", "zero-width", "surrogate",
                              "int", "null", "bool", "list", "object"])
def test_bad_user_is_rejected(user):
    """USER must be a non-empty printable string of at most 64 characters."""
    assert_error(rejected(P.LOGIN, with_payload(P.LOGIN, USER=user)), "INVALID USER")


@pytest.mark.parametrize("user", ["x" * 64, "a", "USER000", "Zoë Ünal", "with space", "名前"])
def test_good_user_is_kept_as_sent(user):
    """Any printable name up to 64 characters is accepted unchanged."""
    assert P.parse(P.LOGIN, with_payload(P.LOGIN, USER=user)) == {"USER": user}


@pytest.mark.parametrize("n", [1, 11, 0, -2, 2.0, 2.5, True, False, "2", None, [2], 10**20],
                         ids=["1", "11", "0", "-2", "2.0", "2.5", "true", "false", "str", "null", "list", "huge"])
def test_bad_participants_are_rejected(n):
    """PARTICIPANTS must be a JSON integer from 2 to 10 (no fraction, no bool, no string)."""
    assert_error(rejected(P.FIND, with_payload(P.FIND, PARTICIPANTS=n)), "INVALID PARTICIPANTS")


@pytest.mark.parametrize("n", range(2, 11))
def test_participants_two_to_ten_are_accepted(n):
    """Every whole number from 2 to 10 is a valid participant count."""
    assert P.parse(P.FIND, with_payload(P.FIND, PARTICIPANTS=n))["PARTICIPANTS"] == n


@pytest.mark.parametrize(("route", "field"), TOKEN_FIELDS)
@pytest.mark.parametrize("value", NOT_TOKENS)
def test_token_that_is_not_a_uuid_is_unknown(route, field, value):
    """A token field holding anything but a UUID (wildcards included) is UNKNOWN <FIELD>."""
    status = "UNKNOWN " + field.replace("_", " ")
    assert_error(rejected(route, with_payload(route, **{field: value})), status)


@pytest.mark.parametrize(("route", "field"), [(r, f) for r, f in TOKEN_FIELDS if f != "ENEMY_TOKEN"])
@pytest.mark.parametrize("value", [None, ""])
def test_empty_user_or_game_token_is_unknown(route, field, value):
    """Only ENEMY_TOKEN may be null or empty; a null or empty USER/GAME token is unknown."""
    status = "UNKNOWN " + field.replace("_", " ")
    assert_error(rejected(route, with_payload(route, **{field: value})), status)


@pytest.mark.parametrize("enemy", [None, ""])
def test_null_or_empty_enemy_means_no_enemy(enemy):
    """ENEMY_TOKEN null or "" parses to None ("I see no enemy left")."""
    assert P.parse(P.ACTION, with_payload(P.ACTION, ENEMY_TOKEN=enemy))["ENEMY_TOKEN"] is None


@pytest.mark.parametrize("action", ["attack", "Attack", "DEFEND", "ATTACK ", "", None, 1, ["ATTACK"]])
def test_action_other_than_attack_is_rejected(action):
    """ACTION must be exactly "ATTACK"."""
    assert_error(rejected(P.ACTION, with_payload(P.ACTION, ACTION=action)), "UNKNOWN ACTION")


# -- frames built by the server ---------------------------------------------------------------


def test_a_login_reply_is_read_in_one_place():
    """login_token reads the token of v1's token frame and of v2's LOGGED IN, and none from USER CREATED or
    a refusal; is_user_created is true for the USER CREATED frame only."""
    replies = {"v1 token": P.user_token(U1), "v2 logged in": P.logged_in(U1, True), "created": P.user_created(),
               "no heroes": P.no_heroes(), "in use": P.error_frame("USER IN USE", "USER_IN_USE"),
               "missing user": P.error_frame("MISSING USER IN PAYLOAD"), "not json": P.error_frame(
                   "MALFORMED JSON", "MALFORMED_JSON")}
    assert {k: P.login_token(f) for k, f in replies.items()} == {
        "v1 token": U1, "v2 logged in": U1, "created": None, "no heroes": None, "in use": None,
        "missing user": None, "not json": None}
    assert [k for k, f in replies.items() if P.is_user_created(f)] == ["created"]
    assert json.loads(P.dumps(P.user_created())) == {"PAYLOAD": {}, "STATUS": "USER CREATED"}  # the wire words


def test_timestamp_is_iso_utc_with_milliseconds():
    """Timestamps look like 2026-11-28T03:00:19.042Z."""
    import re

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", P.timestamp())


def test_attack_record_bytes_equal_the_stored_log_entry(r, keys, client):
    """protocol.attack_record serialised with protocol.dumps is byte-identical to what action.lua logs."""
    g = start_game(client, 2, "bytes")
    attacker, enemy = order(r, keys, g.token)
    prior = hero_hash(r, keys, g.token, enemy)["health"]
    post = rules.hit(prior, hero_hash(r, keys, g.token, attacker)["attack"])

    reply = attack(client(P.ACTION), g.token, attacker, enemy)

    stored = r.lrange(keys.logs(g.token), 0, -1)
    assert len(stored) == 1
    expected = P.dumps(P.attack_record(reply["TIMESTAMP"], g.token, attacker, enemy, prior, post))
    assert stored[0] == expected
    assert json.loads(stored[0]) == reply


def test_no_enemy_record_bytes_equal_the_lua_reply(r, keys, client):
    """protocol.no_enemy_left serialised with protocol.dumps is byte-identical to action.lua's NA record."""
    g: Game = start_game(client, 2, "na-bytes")
    play(client(P.ACTION), r, keys, g)
    winner = order(r, keys, g.token)[0]
    script = r.register_script(load_script("action"))
    ts = P.timestamp()

    kind, record = script(
        keys=[keys.status(g.token), keys.deadlines],
        args=[ts, keys.events_channel, "", "", "0", 10_000, 5_000, "", "", "run", keys.seq("run"), g.token, winner, ""])

    assert kind == "NA"
    assert record == P.dumps(P.no_enemy_left(ts, g.token, winner))
    # and the server's reply to the same request has that shape
    reply = client(P.ACTION).ask(action_frame(g.token, winner, None))
    assert reply == {**P.no_enemy_left(reply["TIMESTAMP"], g.token, winner)}


def test_every_error_code_the_server_can_send_is_documented():
    """Each error CODE in the server's code and scripts (ProtocolError, error_frame, a script's ERR reply) has a row in docs/protocol.md's tables."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = "\n".join(p.read_text() for p in (root / "simlib").glob("*.py"))
    lua = "\n".join(p.read_text() for p in (root / "simlib" / "lua").glob("*.lua"))
    codes = set(re.findall(r"(?:ProtocolError|error_frame)\(\s*(?:f?\"[^\"]*\"|[a-z_]+),\s*(?:f?\")([A-Z_]+)\"", code))
    codes |= set(re.findall(r"\{'ERR', '[^']+', '([A-Z_]+)'\}", lua))
    codes |= set(re.findall(r'"CODE": "([A-Z_]+)"', code))
    assert {"NOT_YOUR_TURN", "UNKNOWN_USER_TOKEN", "REDIS_UNAVAILABLE", "USER_IN_USE", "GAME_LOST"} <= codes
    doc = (root / "docs" / "protocol.md").read_text()
    documented = set(re.findall(r"\| `([A-Z_]+)` \|", doc)) | set(re.findall(r'"CODE": "([A-Z_]+)"', doc))
    assert sorted(codes - documented) == []


def test_every_request_builder_makes_a_frame_its_route_accepts_with_the_same_values():
    """The request builders bots, the tutorial and tests use send exactly what the server's parser takes."""
    g, u, e = (str(uuid.uuid4()) for _ in range(3))
    v1 = [(P.LOGIN, P.login_request("ann"), {"USER": "ann"}),
          (P.FIND, P.find_request(u, 3), {"USER_TOKEN": u, "PARTICIPANTS": 3}),
          (P.LOBBY, P.lobby_request(g, u), {"GAME_TOKEN": g, "USER_TOKEN": u}),
          (P.HERO, P.hero_request(g, u), {"GAME_TOKEN": g, "USER_TOKEN": u}),
          (P.ACTION, P.action_request(g, u, e), {"GAME_TOKEN": g, "USER_TOKEN": u, "ENEMY_TOKEN": e, "ACTION": "ATTACK"}),
          (P.ACTION, P.action_request(g, u, None), {"GAME_TOKEN": g, "USER_TOKEN": u, "ENEMY_TOKEN": None,
                                                    "ACTION": "ATTACK"})]
    for route, frame, fields in v1:
        assert P.parse(route, P.dumps(frame)) == fields
    v2 = [(P.v2_login("ann"), P.LOGIN_V2, {"USER": "ann"}), (P.v2_find(2), P.FIND_V2, {"PARTICIPANTS": 2}),
          (P.v2_attack(e), P.ATTACK_V2, {"ENEMY_TOKEN": e}), (P.v2_attack(None), P.ATTACK_V2, {"ENEMY_TOKEN": None}),
          (P.v2_hero(u), P.HERO_V2, {"USER_TOKEN": u})]
    for frame, verb, fields in v2:
        assert P.parse_session(P.dumps(frame)) == (verb, fields)
