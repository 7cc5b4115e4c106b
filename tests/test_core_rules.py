"""The pure rules, without a server: key format, validation, policy, limits, usage."""

import dataclasses
import os

import pytest

from conftest import package_module

keys = package_module("core.keys")
validation = package_module("core.validation")
policy = package_module("core.policy")
principals = package_module("core.principals")
ratelimit = package_module("core.ratelimit")
usage = package_module("core.usage")
config = package_module("core.config")
throttle = package_module("core.throttle")
proxies = package_module("core.proxies")
setup_code = package_module("core.setup_code")
layout = package_module("paths")


# ---- key format -----------------------------------------------------------------

def test_generated_keys_are_well_formed_and_unique():
    generated = {keys.generate_key() for _ in range(500)}
    assert len(generated) == 500
    for key in generated:
        assert key.startswith("comfy_") and len(key) == keys.KEY_LENGTH
        assert keys.is_well_formed(key)


@pytest.mark.parametrize("mangle", [
    lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"),       # checksum off by one char
    lambda k: k[:10] + ("x" if k[10] != "x" else "y") + k[11:],  # body changed, checksum stale
    lambda k: "ghp_" + k[6:],                                 # another vendor's prefix
    lambda k: k + "0",                                        # too long
    lambda k: k[:-2],                                         # too short
    lambda k: k[:-1] + "-",                                   # outside base62
    lambda k: "",
])
def test_mangled_keys_fail_the_offline_check(mangle):
    assert not keys.is_well_formed(mangle(keys.generate_key()))


def test_hash_is_sha256_hex_of_the_whole_key():
    import hashlib
    key = keys.generate_key()
    assert keys.hash_key(key) == hashlib.sha256(key.encode()).hexdigest()
    assert keys.display_prefix(key) == key[:10]


def test_a_new_key_is_well_formed_and_its_hash_digest_and_prefix_agree():
    import hashlib
    made = keys.new_key()
    assert keys.is_well_formed(made.plaintext)
    assert made.key_hash == hashlib.sha256(made.plaintext.encode()).hexdigest() == keys.hash_key(made.plaintext)
    assert keys.digest_key(made.plaintext) == bytes.fromhex(made.key_hash)
    assert made.prefix == made.plaintext[:10] and made.plaintext.startswith(made.prefix)
    assert len(made.key_id) == keys.KEY_ID_LENGTH and made.key_id.isalnum() and made.key_id not in made.plaintext
    assert made.stored == {"key_id": made.key_id, "key_hash": made.key_hash, "prefix": made.prefix}
    assert keys.new_key().plaintext != made.plaintext


def test_the_hashing_helper_is_sha256_of_utf8_text_in_hex_and_bytes():
    import hashlib
    hashing = package_module("core.hashing")
    for text in ("comfy_abc", "sessiontoken-ÄÖ", "lone \udc80 surrogate"):
        expected = hashlib.sha256(text.encode("utf-8", "surrogatepass"))
        assert hashing.secret_hex(text) == expected.hexdigest()
        assert hashing.secret_digest(text) == expected.digest()


@pytest.mark.parametrize("address, loopback", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("::ffff:127.0.0.1", True), ("0:0:0:0:0:0:0:1", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.1", False), ("::ffff:10.0.0.1", False), ("192.168.1.2", False),
    ("example.com", False), ("", False), (None, False),
])
def test_one_loopback_check_for_listen_addresses_and_peers(address, loopback):
    assert proxies.is_loopback(address) is loopback


# ---- data directory layout -------------------------------------------------------

def test_layout_places_the_database_and_settings_in_the_data_directory(tmp_path):
    user = str(tmp_path / "user")
    data_dir = layout.data_dir(user)
    assert data_dir == os.path.join(user, "__api_auth")
    assert layout.db_file(data_dir) == os.path.join(user, "__api_auth", "auth.db")
    assert layout.config_file(data_dir) == os.path.join(user, "__api_auth", "config.json")


# ---- validation -------------------------------------------------------------------

def test_create_defaults_and_trimming():
    parsed = validation.parse_create({"name": "  My API Key  "})
    assert parsed == {"name": "My API Key", "rate_limit": 100, "metadata": {}, "scopes": ["generate"],
                      "job_limits": {"prompts_per_hour": None, "max_waiting": None},
                      "expires_at": None, "allowed_ips": []}


@pytest.mark.parametrize("body, field", [
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"name": 5}, "name"),
    ({"name": "a\x00b"}, "name"),
    ({"name": "a\nb"}, "name"),
    ({"name": "ok", "rate_limit": True}, "rate_limit"),
    ({"name": "ok", "rate_limit": "100"}, "rate_limit"),
    ({"name": "ok", "rate_limit": 1.5}, "rate_limit"),
    ({"name": "ok", "rate_limit": None}, "rate_limit"),
    ({"name": "ok", "rate_limit": -1}, "rate_limit"),
    ({"name": "ok", "rate_limit": 1_000_000_001}, "rate_limit"),
    ({"name": "ok", "metadata": []}, "metadata"),
    ({"name": "ok", "metadata": "x"}, "metadata"),
    ({"name": "ok", "metadata": {"a": "x" * 17000}}, "metadata"),
    ({"name": "ok", "metadata": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}}, "metadata"),
    ({"name": "ok", "scopes": "admin"}, "scopes"),
    ({"name": "ok", "scopes": ["root"]}, "scopes"),
    ({"name": "ok", "api_key": "comfy_x"}, "api_key"),
    ({"name": "ok", "is_admin": True}, "is_admin"),
])
def test_create_refuses_bad_fields_naming_them(body, field):
    with pytest.raises(validation.InvalidInput) as caught:
        validation.parse_create(body)
    assert caught.value.field == field


def test_rate_limit_bounds_are_inclusive():
    assert validation.parse_create({"name": "a", "rate_limit": 0})["rate_limit"] == 0
    assert validation.parse_create({"name": "a", "rate_limit": 10**9})["rate_limit"] == 10**9


def test_update_treats_null_as_unchanged_and_checks_is_active():
    assert validation.parse_update({"name": None, "rate_limit": 5}) == {"rate_limit": 5}
    with pytest.raises(validation.InvalidInput):
        validation.parse_update({"is_active": "false"})
    with pytest.raises(validation.InvalidInput):
        validation.parse_update([])


@pytest.mark.parametrize("text", ["0", "367", "-1", "1.5", "abc", "", "３", "99999"])
def test_days_outside_1_to_366_are_refused(text):
    with pytest.raises(validation.InvalidInput):
        validation.parse_days(text)


@pytest.mark.parametrize("body, field, code", [
    ([], None, "INVALID_BODY"),
    ({}, None, "MISSING_FIELD"),
    ({"password": "a", "api_key": "b"}, None, "MISSING_FIELD"),
    ({"user": "x"}, "user", "UNKNOWN_FIELD"),
    ({"password": ""}, "password", "INVALID_FIELD"),
    ({"api_key": 5}, "api_key", "INVALID_FIELD"),
    ({"password": "x" * (validation.SECRET_MAX + 1)}, "password", "INVALID_FIELD"),
])
def test_sign_in_bodies_are_checked_in_the_core(body, field, code):
    with pytest.raises(validation.InvalidInput) as caught:
        validation.parse_login(body)
    assert (caught.value.field, caught.value.code) == (field, code)


def test_sign_in_setup_and_password_bodies_that_pass():
    assert validation.parse_login({"api_key": "comfy_x"}) == ("api_key", "comfy_x")
    assert validation.parse_setup({"code": "ABCD-EFGH", "password": "long enough"}) == ("ABCD-EFGH", "long enough")
    assert validation.parse_password_change({"password": "long enough"}) == "long enough"
    assert validation.parse_end_all({}) is False and validation.parse_end_all({"keep_current": True}) is True
    for bad in ({"code": "x" * (validation.SETUP_CODE_MAX + 1), "password": "long enough"}, {"code": "ABCD"}):
        with pytest.raises(validation.InvalidInput):
            validation.parse_setup(bad)
    for bad in ({"password": "short"}, {"password": "long enough", "x": 1}):
        with pytest.raises(validation.InvalidInput):
            validation.parse_password_change(bad)
    with pytest.raises(validation.InvalidInput):
        validation.parse_end_all({"keep_current": "yes"})


# ---- access policy ----------------------------------------------------------------------

KEY = principals.KeyRecord(pk=1, key_id="k", key_hash="h", name="n", prefix="comfy_abcd",
                           rate_limit=10, is_active=True, scopes=("generate",))
ADMIN_KEY = principals.KeyRecord(pk=2, key_id="a", key_hash="h2", name="n", prefix="comfy_abcd",
                                 rate_limit=10, is_active=True, scopes=("admin",))


@pytest.mark.parametrize("template", ["/keys", "/api/keys", "/keys/{key_id}", "/api/keys/{key_id}"])
@pytest.mark.parametrize("mode", ["enable", "require"])
def test_key_management_is_admin_only_in_every_mode(template, mode):
    rules = policy.AccessPolicy(mode)
    route_class = rules.classify(template, "POST")
    assert rules.decide(principals.ANONYMOUS, route_class) == policy.UNAUTHENTICATED
    assert rules.decide(principals.for_key(KEY, "header"), route_class) == policy.FORBIDDEN
    assert rules.decide(principals.for_key(ADMIN_KEY, "header"), route_class) == policy.ALLOW
    assert rules.decide(principals.LOCAL_ADMIN, route_class) == policy.ALLOW
    # the local bootstrap reaches the key routes; the handlers keep it to non-admin keys
    assert rules.decide(principals.LOCAL_BOOTSTRAP, route_class) == policy.ALLOW


@pytest.mark.parametrize("template", ["/auth/password", "/api/audit", "/auth/sessions/end-all", "/auth/openapi.json"])
def test_the_local_bootstrap_is_no_admin_elsewhere(template):
    for mode in ("enable", "require"):
        rules = policy.AccessPolicy(mode)
        assert rules.decide(principals.LOCAL_BOOTSTRAP, rules.classify(template, "PUT")) == policy.FORBIDDEN
    strict = policy.AccessPolicy("require")
    assert strict.decide(principals.LOCAL_BOOTSTRAP, strict.classify("/prompt", "POST")) == policy.UNAUTHENTICATED
    assert strict.decide(principals.LOCAL_BOOTSTRAP, strict.classify("/api/usage", "GET")) == policy.NEED_KEY


@pytest.mark.parametrize("template", [None, "", "/prompt", "/api/prompt", "/internal", "/ws", "/extensions/x"])
def test_anonymous_callers_get_comfyui_as_it_was_in_enable_and_nothing_in_require(template):
    assert policy.AccessPolicy("enable").decide(
        principals.ANONYMOUS, policy.AccessPolicy("enable").classify(template, "GET")) == policy.ALLOW
    strict = policy.AccessPolicy("require")
    assert strict.decide(principals.ANONYMOUS, strict.classify(template, "GET")) == policy.UNAUTHENTICATED


@pytest.mark.parametrize("mode", ["enable", "require"])
def test_a_key_is_held_to_its_scope_and_unknown_routes_are_admin(mode):
    rules = policy.AccessPolicy(mode)
    generate = principals.for_key(KEY, "header")
    reader = principals.for_key(dataclasses.replace(KEY, scopes=("read",)), "header")
    for template in (None, "/prompt", "/api/prompt", "/ws"):  # None: no route matched (a 404 is coming)
        assert rules.decide(generate, rules.classify(template, "GET")) == policy.ALLOW, template
    assert rules.decide(reader, rules.classify("/prompt", "POST")) == policy.FORBIDDEN
    assert rules.decide(reader, rules.classify("", "GET", static=True)) == policy.ALLOW  # the page's files
    for template in ("/internal", "/extensions/x", "", "/my_node/run"):  # dynamic routes no table knows
        need = rules.classify(template, "GET")
        assert need.unclassified and rules.decide(generate, need) == policy.FORBIDDEN, template
        assert rules.decide(principals.for_key(ADMIN_KEY, "header"), need) == policy.ALLOW
    opened = policy.AccessPolicy(mode, route_scopes={"/my_node/": "generate", "/my_node/admin": "admin"})
    assert opened.decide(generate, opened.classify("/api/my_node/run", "POST")) == policy.ALLOW
    assert opened.decide(generate, opened.classify("/my_node/admin", "GET")) == policy.FORBIDDEN
    manager = rules.classify("/api/manager/preview_method", "GET")
    assert rules.decide(generate, manager, manager.level_for({})) == policy.ALLOW
    assert rules.decide(generate, manager, manager.level_for({"value": "auto"})) == policy.FORBIDDEN


def test_public_paths_are_exact_and_cannot_open_admin_routes():
    rules = policy.AccessPolicy("require", extra_public_paths=("/system_stats", "/keys"))
    assert rules.decide(principals.ANONYMOUS, rules.classify("/api/system_stats", "GET")) == policy.ALLOW
    assert rules.decide(principals.ANONYMOUS, rules.classify("/system_stats", "POST")) == policy.UNAUTHENTICATED
    assert rules.decide(principals.ANONYMOUS, rules.classify("/system_stats/x", "GET")) == policy.UNAUTHENTICATED
    assert rules.decide(principals.ANONYMOUS, rules.classify("/keys", "GET")) == policy.UNAUTHENTICATED


def test_usage_needs_a_key_not_just_any_principal():
    rules = policy.AccessPolicy("enable")
    route_class = rules.classify("/api/usage", "GET")
    assert rules.decide(principals.LOCAL_ADMIN, route_class) == policy.NEED_KEY
    assert rules.decide(principals.for_key(KEY, "header"), route_class) == policy.ALLOW


# ---- rate limiter (injectable clock: window rollover is tested, unlike the fork) ----------------

def test_limiter_admits_exactly_the_limit_then_resets_at_the_next_hour():
    limiter = ratelimit.HourlyLimiter()
    start = 1_700_000_000
    hour_end = ratelimit.window_start(start) + 3600
    results = [limiter.hit(7, 3, start + i) for i in range(5)]
    assert [allowed for allowed, _, _ in results] == [True, True, True, False, False]
    assert [remaining for _, remaining, _ in results] == [2, 1, 0, 0, 0]
    assert {reset for _, _, reset in results} == {hour_end}
    assert limiter.hit(7, 3, hour_end)[0] is True  # next window
    assert limiter.used(7, hour_end) == 1


def test_limit_zero_admits_nothing_and_a_raised_limit_applies_at_once():
    limiter = ratelimit.HourlyLimiter()
    assert limiter.hit(1, 0, 100)[0] is False
    assert limiter.hit(1, 1, 100)[0] is True
    assert limiter.hit(1, 1, 100)[0] is False
    assert limiter.hit(1, 5, 100)[0] is True


def test_limiter_pending_counts_drain_and_seed():
    limiter = ratelimit.HourlyLimiter()
    for _ in range(4):
        limiter.hit(1, 10, 7200)
    assert limiter.drain() == {(1, 7200): 4}
    assert limiter.drain() == {}
    fresh = ratelimit.HourlyLimiter()
    fresh.seed(1, 7200, 4)
    assert fresh.hit(1, 5, 7300) == (True, 0, 10800)
    assert fresh.hit(1, 5, 7300)[0] is False


def test_a_lowered_limit_applies_at_once_to_quota_already_claimed():
    quota = ratelimit.SharedQuota()
    window = 3600 * 500_000
    quota.grant(1, window, 40, 100)       # this process holds 40; others claimed 60 of the limit 100
    assert [quota.take(1, 100, window) for _ in range(5)] == [39, 38, 37, 36, 35]
    # The limit drops to 64: 60 claimed elsewhere + 5 used here already exceed it.
    assert quota.take(1, 64, window) == ratelimit.REFUSED
    assert quota.take(1, 66, window) == 0  # 60 + 5 < 66: one more, and that is the last
    assert quota.take(1, 66, window) == ratelimit.REFUSED
    assert quota.take(1, 100, window) == 33  # raised again: the claimed quota is usable again


def test_usage_cells_are_bounded_against_invented_methods_and_still_count_everything():
    aggregator = usage.UsageAggregator()
    hour = 3600 * 500_000
    for i in range(usage.MAX_ROUTES + 500):
        aggregator.record(aggregator.cells_for(("(unmatched)", f"M{i}")), 1, True, 0.0, hour + 1, hour)
    assert len(aggregator._routes) == usage.MAX_ROUTES + 1          # the overflow cell is the one extra
    cells, _ = aggregator.drain()
    assert sum(ok for ok, _, _ in cells.values()) == usage.MAX_ROUTES + 500
    assert cells[(1, hour, *usage.OVERFLOW_ROUTE)][0] == 500


def test_hour_clock_rolls_at_the_hour_and_the_limiter_counts_per_window():
    clock = ratelimit.HourClock()
    hour = 3600 * 500_000
    for now in (hour + 0.0, hour + 3599.999):
        if not clock.start <= now < clock.end:
            clock.roll(now)
        assert (clock.window, clock.reset_at, clock.reset_text) == (hour, hour + 3600, str(hour + 3600))
    assert not clock.start <= hour + 3600.0 < clock.end       # the next hour starts a new window
    clock.roll(hour + 3600.0)
    assert clock.window == hour + 3600
    limiter = ratelimit.HourlyLimiter()
    assert [limiter.take(1, 2, hour) for _ in range(3)] == [1, 0, ratelimit.REFUSED]
    assert limiter.take(1, 2, hour + 3600) == 1


# ---- usage aggregation ---------------------------------------------------------------------

def test_usage_cells_sum_by_hour_route_method_and_report_per_day():
    aggregator = usage.UsageAggregator()
    day = 86400 * 20000
    for route_method, ok, at in [(("/prompt", "POST"), True, day + 10), (("/prompt", "POST"), False, day + 20),
                                 (("/queue", "GET"), True, day + 3700),
                                 (("/queue", "GET"), True, day + 10)]:  # an earlier hour, recorded late
        aggregator.record(aggregator.cells_for(route_method), 1, ok, 0.01, at, ratelimit.window_start(at))
    cells, last_used = aggregator.drain()
    assert cells[(1, day, "/prompt", "POST")][:2] == [1, 1]
    assert last_used == {1: day + 3700}
    rows = [(hour, route, method, ok, failed, duration) for (_, hour, route, method), (ok, failed, duration) in cells.items()]
    stats = usage.summarize(rows, 30, day + 4000)
    assert cells[(1, day, "/queue", "GET")][:2] == [1, 0] and cells[(1, day + 3600, "/queue", "GET")][:2] == [1, 0]
    assert stats["total_requests"] == 4
    assert stats["successful_requests"] == 3 and stats["failed_requests"] == 1
    assert list(stats["requests_per_day"].values()) == [4]
    by_route = {e["route"]: e for e in stats["endpoints"]}
    assert by_route["/prompt"] == {"method": "POST", "route": "/prompt", "requests": 2, "successful": 1, "failed": 1}


# ---- configuration ------------------------------------------------------------------------------

def test_environment_overrides_the_config_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"mode": "require", "public_paths": ["/system_stats"]}')
    settings = config.load_settings({}, str(path))
    assert settings.mode == "require" and settings.public_paths == ("/system_stats",)
    assert settings.trust_localhost == "off"
    settings = config.load_settings({"COMFYUI_API_AUTH": "enable"}, str(path))
    assert settings.mode == "enable" and settings.trust_localhost == "bootstrap"


@pytest.mark.parametrize("value, expected", [
    ("bootstrap", "bootstrap"), (" Bootstrap ", "bootstrap"), ("on", "on"), ("off", "off"),
    ("true", "on"), ("1", "on"), ("yes", "on"), ("false", "off"), ("0", "off"), ("no", "off"),
])
def test_trust_localhost_takes_bootstrap_on_off_and_the_old_booleans(value, expected):
    settings = config.load_settings({"COMFYUI_API_AUTH_TRUST_LOCALHOST": value}, None)
    assert settings.trust_localhost == expected
    assert config.load_settings({"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_TRUST_LOCALHOST": value},
                                None).trust_localhost == expected


def test_trusted_proxies_are_addresses_or_cidrs():
    settings = config.load_settings({"COMFYUI_API_AUTH_TRUSTED_PROXIES": " 127.0.0.1, 10.0.0.0/8,::1 "}, None)
    assert [str(n) for n in settings.trusted_proxies] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    assert config.load_settings({}, None).trusted_proxies == ()
    assert config.load_settings({"COMFYUI_API_AUTH_TRUSTED_PROXIES": ""}, None).trusted_proxies == ()


def test_client_address_is_the_right_most_untrusted_forwarded_for():
    trusted = proxies.TrustedProxies(config.load_settings(
        {"COMFYUI_API_AUTH_TRUSTED_PROXIES": "127.0.0.1,10.0.0.0/8"}, None).trusted_proxies)
    # from anyone else, X-Forwarded-For is ignored
    assert trusted.client_address("203.0.113.9", ["1.2.3.4"]) == "203.0.113.9"
    assert proxies.TrustedProxies().client_address("127.0.0.1", ["1.2.3.4"]) == "127.0.0.1"
    # from a trusted proxy: the address it saw, not what the client wrote before it
    assert trusted.client_address("127.0.0.1", ["198.51.100.7"]) == "198.51.100.7"
    assert trusted.client_address("127.0.0.1", ["1.2.3.4, 198.51.100.7"]) == "198.51.100.7"
    assert trusted.client_address("127.0.0.1", ["1.2.3.4", "198.51.100.7, 10.1.2.3"]) == "198.51.100.7"
    assert trusted.client_address("::ffff:127.0.0.1", ["198.51.100.7"]) == "198.51.100.7"
    assert trusted.client_address("127.0.0.1", ["10.0.0.5, 10.0.0.6"]) == "10.0.0.5"  # all trusted: the first
    assert trusted.client_address("127.0.0.1", ["1.2.3.4, garbage, 10.0.0.6"]) == "10.0.0.6"
    assert trusted.client_address("127.0.0.1", []) == "127.0.0.1"
    assert trusted.forwarded_https("127.0.0.1", ["https"]) is True
    assert trusted.forwarded_https("127.0.0.1", ["http, https"]) is True   # the nearest proxy's word
    assert trusted.forwarded_https("127.0.0.1", ["https, http"]) is False
    assert trusted.forwarded_https("203.0.113.9", ["https"]) is False


def test_setup_codes_are_80_bits_and_forgive_case_and_dashes():
    shown, digest = setup_code.new_code()
    assert len(shown) == 19 and shown.count("-") == 3
    assert setup_code.matches(shown, digest) and setup_code.matches(shown.lower().replace("-", " "), digest)
    assert not setup_code.matches(shown[:-1], digest) and not setup_code.matches("", digest)
    assert len({setup_code.new_code()[0] for _ in range(200)}) == 200


@pytest.mark.parametrize("environ, variable", [
    ({"COMFYUI_API_AUTH": "yes"}, "COMFYUI_API_AUTH"),
    ({"COMFYUI_API_AUTH_TRUST_LOCALHOST": "maybe"}, "COMFYUI_API_AUTH_TRUST_LOCALHOST"),
    ({"COMFYUI_API_AUTH_TRUSTED_PROXIES": "10.0.0.1/8"}, "COMFYUI_API_AUTH_TRUSTED_PROXIES"),
    ({"COMFYUI_API_AUTH_TRUSTED_PROXIES": "127.0.0.1,"}, "COMFYUI_API_AUTH_TRUSTED_PROXIES"),
    ({"COMFYUI_API_AUTH_TRUSTED_PROXIES": "localhost"}, "COMFYUI_API_AUTH_TRUSTED_PROXIES"),
    ({"COMFYUI_API_AUTH_TRUSTED_PROXIES": "*"}, "COMFYUI_API_AUTH_TRUSTED_PROXIES"),
    ({"COMFYUI_API_AUTH_ALLOW_FRAMING": "sometimes"}, "COMFYUI_API_AUTH_ALLOW_FRAMING"),
    ({"COMFYUI_API_AUTH_QUERY_TOKEN": "token"}, "COMFYUI_API_AUTH_QUERY_TOKEN"),
    ({"COMFYUI_API_AUTH_SESSION_TTL": "5"}, "COMFYUI_API_AUTH_SESSION_TTL"),
    ({"COMFYUI_API_AUTH_LOGIN_CONCURRENCY": "0"}, "COMFYUI_API_AUTH_LOGIN_CONCURRENCY"),
    ({"COMFYUI_API_AUTH_MAX_SESSIONS_PER_KEY": "none"}, "COMFYUI_API_AUTH_MAX_SESSIONS_PER_KEY"),
    ({"COMFYUI_API_AUTH_MAX_ADMIN_SESSIONS": "0"}, "COMFYUI_API_AUTH_MAX_ADMIN_SESSIONS"),
    ({"COMFYUI_API_AUTH_AUDIT_RETENTION_DAYS": "-1"}, "COMFYUI_API_AUTH_AUDIT_RETENTION_DAYS"),
    ({"COMFYUI_API_AUTH_PUBLIC_PATHS": "*.js"}, "COMFYUI_API_AUTH_PUBLIC_PATHS"),
    ({"COMFYUI_API_AUTH_PUBLIC_PATHS": "/system_stats,/api/usage"}, "COMFYUI_API_AUTH_PUBLIC_PATHS"),
    ({"COMFYUI_API_AUTH_PUBLIC_PATHS": "/keys/some_id"}, "COMFYUI_API_AUTH_PUBLIC_PATHS"),
])
def test_bad_settings_name_the_variable(environ, variable):
    with pytest.raises(config.ConfigError) as caught:
        config.load_settings(environ, None)
    assert caught.value.variable == variable


def test_the_query_token_is_off_unless_asked_for_in_the_environment_or_the_config_file(tmp_path):
    assert config.load_settings({}, None).query_token is False
    assert config.load_settings({"COMFYUI_API_AUTH_QUERY_TOKEN": "on"}, None).query_token is True
    path = tmp_path / "config.json"
    path.write_text('{"query_token": true}')
    assert config.load_settings({}, str(path)).query_token is True
    assert config.load_settings({"COMFYUI_API_AUTH_QUERY_TOKEN": "off"}, str(path)).query_token is False


def test_a_public_path_over_a_package_route_in_the_config_file_names_the_file_key(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"public_paths": ["/system_stats", "/usage"]}')
    with pytest.raises(config.ConfigError) as caught:
        config.load_settings({}, str(path))
    assert caught.value.variable == f"{path}:public_paths" and "'/usage'" in str(caught.value)


@pytest.mark.parametrize("text, secrets", [
    ("postgresql://user:pw-1@db.example/auth", ["pw-1"]),
    ("postgresql://user:p@ss:w-2@db.example:5432/auth?sslmode=require", ["p@ss", "ss:w-2"]),
    ("postgresql://user@db.example/auth?password=pw-3&sslmode=require", ["pw-3"]),
    ("postgresql://user@db.example/auth?sslmode=require&PASSWORD=pw-4", ["pw-4"]),
    ("postgresql://u@h/db?sslpassword=pw-5&sslkey=/k", ["pw-5"]),
    ("host=db user=u password='pw 6 \\' x' dbname=auth", ["pw 6", "x'"]),
    ("pass=pw-7 passwd=pw-8 pwd=pw-9", ["pw-7", "pw-8", "pw-9"]),
    ("connect failed: {'user': 'u', 'password': 'pw 10'}", ["pw 10"]),
])
def test_database_passwords_are_masked_in_every_form(text, secrets):
    masked = package_module("storage.database").mask_secrets(text)
    assert "***" in masked
    for secret in secrets:
        assert secret not in masked, masked


def test_masking_leaves_what_is_no_password():
    mask = package_module("storage.database").mask_secrets
    for text in ("sqlite:////data/auth.db", "postgresql://user@db.example/auth?sslmode=require",
                 'FATAL:  password authentication failed for user "u"', "bypass=1 compass=2"):
        assert mask(text) == text


def test_login_throttle_is_bounded_in_memory():
    guard = throttle.AttemptThrottle(attempts=3, window=60, max_clients=100)
    for i in range(1000):
        guard.failed(f"10.0.{i // 256}.{i % 256}", 0)
    assert len(guard) == 100
    for _ in range(3):
        guard.failed("1.2.3.4", 10)
    assert guard.retry_after("1.2.3.4", 11) > 0
    assert guard.retry_after("1.2.3.4", 80) == 0


def test_an_attempt_is_counted_when_it_starts_and_given_back_if_it_was_no_failure():
    guard = throttle.AttemptThrottle(attempts=3, window=60)
    assert [guard.reserve("1.2.3.4", 10 + i) for i in range(3)] == [0, 0, 0]
    assert guard.reserve("1.2.3.4", 13) == 58        # three in flight: the fourth waits, uncounted
    guard.refund("1.2.3.4", 11)                      # the second was no failure
    assert guard.reserve("1.2.3.4", 14) == 0
    assert guard.reserve("5.6.7.8", 14) == 0         # per address
    guard.block("5.6.7.8", 100)                      # another process says: spent until 100
    assert guard.reserve("5.6.7.8", 50) == 51
    assert guard.reserve("5.6.7.8", 101) == 0


def test_password_checks_in_flight_are_capped():
    slots = throttle.WorkSlots(2)
    assert [slots.take() for _ in range(3)] == [True, True, False]
    slots.give_back()
    assert slots.take() and not slots.take()


def test_shared_quota_spends_grants_asks_for_more_and_gives_back_the_rest():
    quota = ratelimit.SharedQuota()
    now = 1_700_000_000
    window = ratelimit.window_start(now)
    assert quota.take(1, 100, window) is None                   # nothing claimed yet
    assert quota.batch_size(1, 100, now) == 12                   # an eighth of what is left
    quota.grant(1, window, 12, 12)
    results = []
    for _ in range(12):
        results.append(quota.take(1, 100, window))
        # Flagged once, on the take that leaves a quarter of the grant (3 of 12).
        assert quota.running_low == ([1] if len(results) == 9 else [])
        quota.running_low.clear()
    assert results == list(range(99, 87, -1))                    # left in the hour, globally
    assert quota.take(1, 100, window) is None                    # spent: claim again
    quota.grant(1, window, 0, 100)                               # others took the rest
    assert quota.take(1, 100, window) == ratelimit.REFUSED
    assert quota.running_low == []                               # nothing left to claim: no prefetch
    assert quota.take(1, 100, window + 3600) is None             # a new hour: claim again
    quota.grant(1, window + 3600, 8, 8)
    for _ in range(6):
        quota.take(1, 100, window + 3600)
    assert quota.running_low == [1]                              # 2 of 8 left, and 92 more to claim
    quota.grant(2, window, 10, 10)
    quota.take(2, 50, window)
    assert quota.take(2, 50, window) == 48                      # 2 used, 10 claimed by this process only
    assert quota.unspent(now) == {(2, window): 8}
