//! The compose file, with the Compose v2 CLI.

use std::path::Path;

use crate::{ROOT, ok, ok_in, tool};

#[test]
fn compose_config_is_valid_for_every_profile_combination() {
    let combos: [&[&str]; 8] = [
        &["bifrost", "front"],
        &["bifrost"],
        &["cluster"],
        &["cluster", "demo"],
        &["monitoring"],
        &["demo"],
        &["bifrost", "monitoring", "demo"],
        &["bifrost", "cluster", "monitoring", "demo"],
    ];
    for profiles in combos {
        let mut cmd = tool(".tools/compose/bin/docker-compose", "docker-compose");
        cmd.args(["-f", "compose/docker-compose.yml"]);
        for p in profiles {
            cmd.args(["--profile", p]);
        }
        cmd.args(["config", "--format", "json"]);
        let out = ok(&mut cmd);
        let json = &out[out.find('{').unwrap()..];
        let v: serde_json::Value =
            serde_json::from_str(json.trim_end()).unwrap_or_else(|e| panic!("{profiles:?}: {e}"));
        let services = v["services"].as_object().unwrap();
        if profiles.contains(&"bifrost") {
            let b = &services["bifrost"];
            assert_eq!(b["ports"][0]["published"], "8080");
            assert!(b["healthcheck"]["test"].to_string().contains("health"));
            assert_eq!(b["restart"], "unless-stopped");
            assert!(services.contains_key("redis"));
        }
        if profiles.contains(&"cluster") {
            for s in ["caddy", "tier1-1", "tier1-2", "tier1-3", "redis"] {
                assert!(services.contains_key(s), "{profiles:?} lacks {s}");
            }
        }
        if profiles.contains(&"front") {
            let f = &services["omniroute"];
            assert_eq!(f["environment"]["BIFROST_BASE_URL"], "http://bifrost:8080");
            assert_eq!(f["environment"]["OMNIROUTE_RELAY_BACKEND"], "auto");
        }
        if profiles.contains(&"demo") {
            assert!(services["mock-upstream"]["command"].to_string().contains("mock-upstream"));
        }
    }
}

#[test]
fn compose_merges_into_another_projects_file() {
    // docker compose -f their.yml -f <tier1>/compose/docker-compose.yml --profile bifrost up
    let dir = std::env::temp_dir().join(format!("tier1-their-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let theirs = "services:\n  front:\n    image: example/front\n    environment:\n      BIFROST_BASE_URL: http://bifrost:8080\n";
    std::fs::write(dir.join("their.yml"), theirs).unwrap();
    let ours = Path::new(ROOT).join("compose/docker-compose.yml");
    let out = ok_in(
        tool(".tools/compose/bin/docker-compose", "docker-compose").env("TIER1_DIR", ROOT).args([
            "-f",
            "their.yml",
            "-f",
            ours.to_str().unwrap(),
            "--profile",
            "bifrost",
            "config",
            "--format",
            "json",
        ]),
        &dir,
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let v: serde_json::Value = serde_json::from_str(out[out.find('{').unwrap()..].trim_end()).unwrap();
    assert!(v["services"]["front"].is_object() && v["services"]["bifrost"].is_object());
    let b = &v["services"]["bifrost"];
    assert_eq!(b["volumes"][0]["source"], format!("{ROOT}/config/compose.toml"));
    assert_eq!(b["build"]["context"], ROOT);
}
