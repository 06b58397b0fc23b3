use std::collections::HashMap;

use super::*;

fn env() -> HashMap<String, String> {
    [("OPENAI_API_KEY".to_owned(), "sk-test-1234".to_owned())].into()
}

fn parse_toml(text: &str) -> Result<Config, ConfigErrors> {
    parse(text, Format::Toml, &env())
}

#[test]
fn demo_config_is_valid() {
    let c = parse_toml(DEMO_TOML).unwrap();
    assert_eq!(c.providers[0].kind, ProviderKind::Mock);
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
}

#[test]
fn example_config_is_valid() {
    let text = include_str!("../../config/tier1.example.toml");
    let env: HashMap<String, String> = [
        ("OPENAI_API_KEY", "sk-a"),
        ("OPENAI_API_KEY_2", "sk-b"),
        ("BIFROST_API_KEY", "front-key"),
        ("GROQ_API_KEY", "gsk-c"),
        ("OPENROUTER_API_KEY", "or-d"),
        ("DEEPSEEK_API_KEY", "ds-e"),
        ("TIER1_ADMIN_KEY", "admin-f"),
        ("TIER1_REDIS_URL", "redis://127.0.0.1:6379"),
        ("ANTHROPIC_API_KEY", "sk-ant-g"),
        ("AZURE_OPENAI_API_KEY", "az-h"),
        ("GEMINI_API_KEY", "gm-i"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let c = parse(text, Format::Toml, &env).unwrap();
    assert!(c.routes.len() >= 2);
}

#[test]
fn defaults_apply() {
    let c = parse_toml("").unwrap();
    assert_eq!(c.server.max_body_bytes, 16 * 1024 * 1024);
    assert_eq!(c.server.drain_timeout, Duration::from_secs(30));
    assert_eq!(c.server.shutdown_delay, Duration::ZERO);
    assert!(c.server.api_keys.is_empty());
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let text = r#"
[server]
listen = "nowhere"
drain_timeout = "soon"
api_keys = ["env:NOT_SET_ANYWHERE"]

[providers.openai]
kind = "openai"
[[providers.openai.keys]]
name = "primary"
secret = "env:OPENAI_API_KEY"

[providers.weird]
kind = "telepathy"

[[routes]]
name = "smart"
models = ["smart"]
targets = [{ provider = "openai", model = "gpt-4o" }]

[[routes]]
name = "smart"
models = ["smart"]
targets = []

[[routes]]
name = "third"
targets = [{ provider = "opneai", model = "gpt-4o" }]
"#;
    let errors = parse_toml(text).unwrap_err();
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    let expect = [
        "server.listen: invalid socket address \"nowhere\"",
        "server.drain_timeout: invalid duration \"soon\"",
        "server.api_keys[0]: environment variable NOT_SET_ANYWHERE is not set",
        "providers.weird.kind: unknown provider kind \"telepathy\"",
        "routes[1].name: duplicate route name \"smart\"",
        "routes[1].targets: a route needs at least one target",
        "routes[2].targets[0].provider: unknown provider \"opneai\"",
    ];
    for e in expect {
        assert!(lines.iter().any(|l| l.starts_with(e)), "missing {e:?} in {lines:#?}");
    }
}

#[test]
fn unknown_fields_are_refused() {
    let err = parse_toml("[server]\nlisten = \"127.0.0.1:1\"\nlisten_typo = 1\n").unwrap_err();
    assert!(err.to_string().contains("listen_typo"), "{err}");
}

#[test]
fn json_config_has_the_same_schema() {
    let text = r#"{"server":{"listen":"127.0.0.1:9000"},
        "providers":{"local":{"kind":"openai","base_url":"http://127.0.0.1:11434/v1"}},
        "routes":[{"name":"r","models":["m*"],"targets":[{"provider":"local","model":"llama3"}]}]}"#;
    let c = parse(text, Format::Json, &env()).unwrap();
    assert_eq!(c.server.listen.port(), 9000);
    assert_eq!(c.providers[0].base_url.as_ref().unwrap().to_string(), "http://127.0.0.1:11434/v1");
    assert!(parse(r#"{"bogus":1}"#, Format::Json, &env()).is_err());
}

#[test]
fn secrets_never_print_in_debug() {
    let c = parse_toml(
        "[providers.openai]\nkind = \"openai\"\n[[providers.openai.keys]]\nname = \"k\"\nsecret = \"env:OPENAI_API_KEY\"\n",
    )
    .unwrap();
    let dump = format!("{c:?}");
    assert!(!dump.contains("sk-test-1234"), "{dump}");
    assert_eq!(c.secrets().len(), 1);
}

#[test]
fn bad_base_url_and_provider_name() {
    let err = parse_toml("[providers.\"a/b\"]\nkind = \"openai\"\nbase_url = \"ftp://x\"\n").unwrap_err();
    let s = err.to_string();
    assert!(s.contains("providers.a/b: provider names use only"), "{s}");
    assert!(s.contains("providers.a/b.base_url: invalid URL"), "{s}");
}

#[test]
fn debug_of_a_whole_config_shows_no_secret() {
    let dir = std::env::temp_dir().join(format!("tier1-debug-secret-{}", std::process::id()));
    std::fs::write(&dir, "sk-file-secret-0003\n").unwrap();
    let text = format!(
        r#"
[server]
api_keys = ["env:FRONT", "front-literal-secret-0004"]
admin_keys = ["env:ADMIN"]
[providers.a]
kind = "openai"
base_url = "http://127.0.0.1:1/v1"
headers = {{ "X-Org" = "env:ORG" }}
keys = [{{ name = "one", secret = "env:KEY" }}, {{ name = "two", secret = "file:{}" }}]
[[routes]]
name = "r"
targets = [{{ provider = "a", model = "m" }}]
[redis]
url = "env:REDIS"
"#,
        dir.display()
    );
    let env: HashMap<String, String> = [
        ("FRONT", "front-env-secret-0001"),
        ("ADMIN", "admin-env-secret-0002"),
        ("KEY", "sk-env-secret-0005"),
        ("ORG", "org-env-secret-0006"),
        ("REDIS", "redis://:redis-pw-secret-0007@127.0.0.1:6379"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let c = parse(&text, Format::Toml, &env).unwrap();
    std::fs::remove_file(&dir).unwrap();
    let shown = format!("{c:?} {c:#?}");
    for secret in [
        "front-env-secret-0001",
        "admin-env-secret-0002",
        "sk-file-secret-0003",
        "front-literal-secret-0004",
        "sk-env-secret-0005",
        "org-env-secret-0006",
        "redis-pw-secret-0007",
    ] {
        assert!(!shown.contains(secret), "{secret} shown by Debug");
    }
    // Every one of them is known to the redactor (the redis password as part of its URL).
    assert_eq!(c.secrets().len(), 7);
    assert!(shown.contains("[redacted]"));
}

#[test]
fn toml_errors_say_where_but_never_quote_the_line() {
    let text = "[server]\napi_keys = [\"front-literal-secret-0008\" \"x\"]\n";
    let e = parse_toml(text).unwrap_err().to_string();
    assert!(!e.contains("front-literal-secret-0008"), "{e}");
    assert!(e.contains("TOML parse error at line 2, column 41"), "{e}");
    assert!(e.contains("comma"), "{e}");
}

#[test]
fn type_errors_name_the_kind_never_the_value() {
    let toml = "[server]\napi_keys = \"front-literal-secret-0009\"\n";
    let e = parse_toml(toml).unwrap_err().to_string();
    assert!(!e.contains("front-literal-secret-0009"), "{e}");
    assert!(e.contains("invalid type: a string, expected a sequence"), "{e}");
    let json = r#"{"server": {"api_keys": "front-literal-\"secret\"-0010"}}"#;
    let e = parse(json, Format::Json, &env()).unwrap_err().to_string();
    assert!(!e.contains("secret"), "{e}");
    assert!(e.contains("invalid type: a string, expected a sequence at line 1"), "{e}");
}

#[test]
fn http2_idle_timeout_defaults_to_the_header_timeout_and_must_be_positive() {
    let c = parse_toml("[server]\nheader_timeout = \"3s\"\n").unwrap();
    assert_eq!(c.server.http2_idle_timeout, Duration::from_secs(3));
    let c = parse_toml("[server]\nhttp2_idle_timeout = \"90s\"\n").unwrap();
    assert_eq!(c.server.http2_idle_timeout, Duration::from_secs(90));
    let e = parse_toml("[server]\nhttp2_idle_timeout = \"0s\"\n").unwrap_err().to_string();
    assert!(e.contains("server.http2_idle_timeout"), "{e}");
}

#[test]
fn the_probe_listener_needs_no_keys_on_any_address() {
    // It serves health and metrics only, which the main listener serves without keys too.
    let c = parse_toml("[server]\nlisten = \"127.0.0.1:1\"\nprobe_listen = \"0.0.0.0:9901\"\n").unwrap();
    assert_eq!(c.server.probe_listen, Some("0.0.0.0:9901".parse().unwrap()));
    let e = parse_toml("[server]\nprobe_listen = \"pod:9901\"\n").unwrap_err();
    assert!(e.to_string().contains("server.probe_listen"), "{e}");
}

#[test]
fn open_surfaces_follow_the_bound_addresses() {
    // The file says loopback (valid), but the process was bound elsewhere (`--listen`): the start
    // and reload checks use the bound addresses.
    let c = parse_toml("[server]\nlisten = \"127.0.0.1:1\"\n").unwrap();
    let any: std::net::SocketAddr = "0.0.0.0:1".parse().unwrap();
    let lo: std::net::SocketAddr = "127.0.0.1:2".parse().unwrap();
    let paths = |v: Vec<ConfigError>| v.into_iter().map(|e| e.path).collect::<Vec<_>>();
    assert!(open_surfaces(&c.server, c.server.listen, None).is_empty());
    assert_eq!(paths(open_surfaces(&c.server, any, None)), ["server.api_keys", "server.admin_keys"]);
    assert_eq!(paths(open_surfaces(&c.server, any, Some(lo))), ["server.api_keys"]);
    let mapped: std::net::SocketAddr = "[::ffff:127.0.0.1]:1".parse().unwrap();
    assert!(open_surfaces(&c.server, mapped, None).is_empty());
    let allowed = ServerConfig { allow_unauthenticated: true, ..c.server };
    assert!(open_surfaces(&allowed, any, None).is_empty());
}

#[test]
fn type_errors_name_their_key_path() {
    let e = parse_toml("[[limits]]\nname = \"a\"\nrpm = 60\n[[limits]]\nname = \"b\"\nrpm = \"600\"\n")
        .unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].path, "limits[1].rpm", "{e}");
    assert_eq!(
        e.0[0].message, "TOML parse error at line 6, column 7: invalid type: a string, expected u64",
        "{e}"
    );
    let e =
        parse_toml("[providers.p]\nkind = \"openai\"\n[[providers.p.keys]]\nweight = \"9\"\n").unwrap_err();
    assert_eq!(e.0[0].path, "providers.p.keys[0].weight", "{e}");
    let json = r#"{"limits": [{"name": "a", "rpm": "600"}]}"#;
    let e = parse(json, Format::Json, &env()).unwrap_err();
    assert_eq!(e.0[0].path, "limits[0].rpm", "{e}");
    assert!(e.0[0].message.starts_with("invalid type: a string, expected u64 at line 1"), "{e}");
}

#[test]
fn every_structural_error_is_reported_in_file_order() {
    let text = r#"
[server]
listen = 8080
bogus = true

[[routes]]
name = "r"
targets = "all"

[[routes]]
name = "s"
targets = [{ provider = "nope", model = "m" }]

[[limits]]
name = "ok"

[[limits]]
rpm = "600"

[surprise]
x = 1
y = 2
"#;
    let e = parse_toml(text).unwrap_err();
    let paths: Vec<&str> = e.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["server.listen", "server.bogus", "routes[0].targets", "limits[1].rpm", "surprise"],
        "{e}"
    );
    assert!(e.0[0].message.contains("line 3, column 10: invalid type: integer"), "{e}");
    assert!(e.0[1].message.contains("unknown field `bogus`"), "{e}");
    // Semantic checks wait for a sound structure (routes[1]'s provider is unknown).
    assert!(!e.to_string().contains("unknown provider"), "{e}");
}

#[test]
fn parts_are_split_only_where_the_schema_takes_an_empty_array_or_table() {
    // `[routes]` as a table and `server` as an array: one error each, not one per entry (nor a
    // struct read positionally from one element at a time).
    let e = parse_toml("[routes]\na = 1\nb = 2\n").unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!((e.0[0].path.as_str(), e.0[0].message.contains("expected a sequence")), ("routes", true));
    let e = parse_toml("server = [\"127.0.0.1:1\", 2]\nlog = 3\n").unwrap_err();
    let paths: Vec<&str> = e.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["server[1]", "log"], "{e}");
    assert!(e.0[0].message.contains("expected a sequence"), "{e}");
}

#[test]
fn retry_classes_default_to_moving_on_from_timeouts_and_take_only_retry_or_next() {
    let base = "[providers.p]\nkind = \"mock\"\n[[routes]]\nname = \"r\"\ntargets = [{ provider = \"p\", model = \"m\" }]\n";
    let c = parse_toml(base).unwrap();
    let retry = c.routes[0].retry;
    assert_eq!((retry.on_timeout, retry.on_connect, retry.on_server), (Then::Next, Then::Next, Then::Retry));
    let set = base.replace(
        "name = \"r\"\n",
        "name = \"r\"\nretry = { on_timeout = \"retry\", on_server = \"next\" }\n",
    );
    let retry = parse_toml(&set).unwrap().routes[0].retry;
    assert_eq!((retry.on_timeout, retry.on_connect, retry.on_server), (Then::Retry, Then::Next, Then::Next));
    let bad = base.replace("name = \"r\"\n", "name = \"r\"\nretry = { on_connect = \"later\" }\n");
    let e = parse_toml(&bad).unwrap_err();
    assert_eq!(e.0[0].path, "routes[0].retry.on_connect", "{e}");
    assert!(e.0[0].message.contains("retry or next"), "{e}");
}

#[test]
fn front_manifest_url_must_be_http_or_https_with_a_host() {
    let c = parse_toml("[front]\nmanifest_url = \"https://front.example/api/v1/provider-plugin-manifest\"\nmanifest_refresh = \"5m\"\n").unwrap();
    assert_eq!(c.front.manifest_url.unwrap().host(), Some("front.example"));
    assert_eq!(c.front.manifest_refresh, Duration::from_secs(300));
    let c = parse_toml("").unwrap();
    assert!(c.front.manifest_url.is_none());
    assert_eq!(c.front.manifest_refresh, Duration::from_secs(60));
    for bad in ["ftp://front/x", "/api/v1/provider-plugin-manifest", "not a url"] {
        let e = parse_toml(&format!("[front]\nmanifest_url = \"{bad}\"\n")).unwrap_err();
        assert!(e.0.iter().any(|e| e.path == "front.manifest_url"), "{bad}: {e:?}");
    }
    let e = parse_toml("[front]\nmanifest_url = \"http://f/x\"\nmanifest_refresh = \"0s\"\n").unwrap_err();
    assert!(e.0.iter().any(|e| e.path == "front.manifest_refresh"), "{e:?}");
}

#[test]
fn front_manifest_from_header_needs_api_keys() {
    let e = parse_toml("[front]\nmanifest_from_header = true\n").unwrap_err();
    assert!(e.0.iter().any(|e| e.path == "front.manifest_from_header"), "{e:?}");
    let c =
        parse_toml("[server]\napi_keys = [\"env:OPENAI_API_KEY\"]\n[front]\nmanifest_from_header = true\n")
            .unwrap();
    assert!(c.front.manifest_from_header && c.front.manifest_url.is_none());
}

#[test]
fn a_first_token_deadline_scales_with_the_prompt_up_to_its_max() {
    let base = "[providers.p]\nkind = \"mock\"\nrequest_timeout = \"100s\"\n";
    assert!(parse_toml(base).unwrap().providers[0].first_token_timeout.is_none());
    let set = format!(
        "{base}first_token_timeout = {{ base = \"10s\", per_1k_input_tokens = \"1s\", max = \"30s\" }}\n"
    );
    let f = parse_toml(&set).unwrap().providers[0].first_token_timeout.unwrap();
    assert_eq!(f.for_tokens(0), Duration::from_secs(10));
    assert_eq!(f.for_tokens(5_000), Duration::from_secs(15));
    assert_eq!(f.for_tokens(u64::MAX), Duration::from_secs(30));
    // max defaults to request_timeout, and is never under base.
    let only = format!("{base}first_token_timeout = {{ base = \"10s\" }}\n");
    assert_eq!(
        parse_toml(&only).unwrap().providers[0].first_token_timeout.unwrap().max,
        Duration::from_secs(100)
    );
    let bad = format!("{base}first_token_timeout = {{ base = \"10s\", max = \"5s\" }}\n");
    let e = parse_toml(&bad).unwrap_err();
    assert_eq!(e.0[0].path, "providers.p.first_token_timeout.max", "{e}");
}

#[test]
fn affinity_takes_a_known_session_source_and_a_load_bound_of_at_least_one() {
    use crate::config::{Affinity, SessionFrom};
    let base = "[providers.p]\nkind = \"mock\"\n[[routes]]\nname = \"r\"\ntargets = [{ provider = \"p\", model = \"m\" }]\n";
    assert!(parse_toml(base).unwrap().routes[0].affinity.is_none(), "affinity is off by default");
    let with = |a: &str| base.replace("name = \"r\"\n", &format!("name = \"r\"\naffinity = {a}\n"));
    let a = |text: &str| parse_toml(&with(text)).unwrap().routes[0].affinity.clone().unwrap();
    assert_eq!(a(r#"{ session = "session" }"#), Affinity { session: SessionFrom::Session, load_bound: 1.25 });
    assert_eq!(a(r#"{ session = "prompt" }"#).session, SessionFrom::Prompt { messages: 1 });
    assert_eq!(a(r#"{ session = "prompt", messages = 3 }"#).session, SessionFrom::Prompt { messages: 3 });
    let header = a(r#"{ session = "header:X-User-Id", load_bound = 2.0 }"#);
    assert_eq!(header.session, SessionFrom::Header(http::HeaderName::from_static("x-user-id")));
    assert_eq!(header.load_bound, 2.0);
    for (bad, path) in [
        ("{ load_bound = 1.5 }", "session"),
        (r#"{ session = "cookie" }"#, "session"),
        (r#"{ session = "header:a b" }"#, "session"),
        (r#"{ session = "session", messages = 2 }"#, "messages"),
        (r#"{ session = "session", load_bound = 0.5 }"#, "load_bound"),
    ] {
        let e = parse_toml(&with(bad)).unwrap_err();
        assert_eq!(e.0[0].path, format!("routes[0].affinity.{path}"), "{bad}: {e}");
    }
}

#[test]
fn otlp_is_off_by_default_and_its_endpoint_must_be_http_or_https_with_a_host() {
    assert!(parse_toml("").unwrap().observability.otlp.is_none());
    let c = parse_toml(
        "[observability.otlp]\nendpoint = \"http://collector:4318/\"\nsample_ratio = 0.25\nheaders = { authorization = \"env:OPENAI_API_KEY\" }\n",
    )
    .unwrap();
    let o = c.observability.otlp.as_ref().unwrap();
    assert_eq!(o.endpoint, "http://collector:4318/v1/traces");
    assert_eq!((o.sample_ratio, o.service_name.as_str(), o.max_queue), (0.25, "tier1", 4096));
    assert_eq!(o.headers[0].1.expose(), "sk-test-1234");
    assert!(
        c.secrets().iter().any(|s| s.expose() == "sk-test-1234"),
        "the collector's token is redacted too"
    );
    assert!(!format!("{c:?}").contains("sk-test-1234"), "never printed");
    let full = parse_toml("[observability.otlp]\nendpoint = \"https://c.example/v1/traces\"\n").unwrap();
    assert_eq!(full.observability.otlp.unwrap().endpoint, "https://c.example/v1/traces");
    for bad in
        ["collector:4318", "ftp://c/", "http://", "http://user:pw@c:4318", "http://c/?x=1", "not a url"]
    {
        let e = parse_toml(&format!("[observability.otlp]\nendpoint = \"{bad}\"\n")).unwrap_err();
        assert!(e.0.iter().any(|e| e.path == "observability.otlp.endpoint"), "{bad}: {e:?}");
        if bad.contains("pw") {
            assert!(!e.to_string().contains("pw"), "credentials are not echoed: {e}");
        }
    }
    let e = parse_toml(
        "[observability.otlp]\nsample_ratio = 1.5\nmax_queue = 0\ninterval = \"0s\"\nheaders = { \"bad header\" = \"x\" }\n",
    )
    .unwrap_err();
    for path in [
        "observability.otlp.endpoint",
        "observability.otlp.sample_ratio",
        "observability.otlp.max_queue",
        "observability.otlp.interval",
        "observability.otlp.headers.bad header",
    ] {
        assert!(e.0.iter().any(|e| e.path == path), "{path}: {e:?}");
    }
}
