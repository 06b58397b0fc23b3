use super::*;

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
/// The heading the metrics table follows (the first table after it).
const SECTION: &str = "\n## Observability\n";
const HEADER: &str = "| metric | type | labels | what (its HELP) |\n| --- | --- | --- | --- |\n";

/// Every family tier1 can export: the ones registered at start, and those only a configured
/// Redis, TLS listener or manifest URL registers. A family registered by a new `enable_*` must
/// be enabled here too.
fn everything() -> Metrics {
    let m = Metrics::new().unwrap();
    m.enable_redis().unwrap();
    m.enable_tls().unwrap();
    m.enable_manifest(&["status"]).unwrap();
    m.enable_otlp().unwrap();
    m
}

/// A family's row in the README: `| name | type | labels | HELP |`.
fn row(d: &Described) -> String {
    let labels = if d.labels.is_empty() { "–".to_owned() } else { d.labels.join(", ") };
    format!("| `{}` | {} | {labels} | {} |", d.name, d.kind, d.help.replace('|', "\\|"))
}

/// The metric name of a table row.
fn name_of(row: &str) -> &str {
    row.trim_start_matches('|').trim().split('|').next().unwrap_or("").trim().trim_matches('`')
}

/// The README around its metrics table: the text before, the table's rows (header excluded),
/// the text after.
fn split(readme: &str) -> (&str, Vec<&str>, &str) {
    let section = readme.find(SECTION).expect("README.md has an Observability section");
    let start = section + readme[section..].find("\n|").expect("a table in the Observability section") + 1;
    let len =
        readme[start..].split_inclusive('\n').take_while(|l| l.starts_with('|')).map(str::len).sum::<usize>();
    let rows = readme[start..start + len].lines().skip(2).collect();
    (&readme[..start], rows, &readme[start + len..])
}

/// The README's metrics table is the registry's families, one row each: name, type, label names
/// and HELP, so it cannot drift from what `/metrics` serves. `TIER1_BLESS=1` rewrites it (in
/// registration order) after a metric is added or changed.
#[test]
fn the_readme_table_is_the_registry() {
    let families = everything().families();
    let expected: Vec<String> = families.iter().map(row).collect();
    let readme = std::fs::read_to_string(README).unwrap();
    let (before, rows, after) = split(&readme);
    if std::env::var_os("TIER1_BLESS").is_some() {
        let table = expected.iter().fold(HEADER.to_owned(), |t, r| t + r + "\n");
        std::fs::write(README, format!("{before}{table}{after}")).unwrap();
        return;
    }
    let mut problems = Vec::new();
    for want in &expected {
        match rows.iter().find(|r| name_of(r) == name_of(want)) {
            None => problems.push(format!("README.md has no row for {}; add:\n{want}", name_of(want))),
            Some(got) if got != want => problems.push(format!(
                "README.md's row for {} differs:\n  README:   {got}\n  registry: {want}",
                name_of(want)
            )),
            Some(_) => {}
        }
    }
    for got in &rows {
        if !expected.iter().any(|w| name_of(w) == name_of(got)) {
            problems
                .push(format!("README.md has a row for {}, which no metric registers:\n{got}", name_of(got)));
        }
    }
    let mut names: Vec<&str> = rows.iter().map(|r| name_of(r)).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        problems.push(format!("README.md lists {} twice", w[0]));
    }
    assert!(
        problems.is_empty(),
        "{}\n(TIER1_BLESS=1 cargo nextest run -E 'test(the_readme_table_is_the_registry)' rewrites the table)",
        problems.join("\n")
    );
}

#[test]
fn the_table_check_names_a_missing_extra_and_changed_row() {
    let d = |name: &str, help: &str| Described {
        name: name.into(),
        kind: "counter",
        help: help.into(),
        labels: vec!["a".into(), "b".into()],
    };
    assert_eq!(row(&d("x_total", "Some | thing.")), r"| `x_total` | counter | a, b | Some \| thing. |");
    assert_eq!(name_of(&row(&d("x_total", "h"))), "x_total");
    let readme = format!(
        "intro\n{SECTION}\ntext\n\n{HEADER}| `a` | gauge | | A. |\n| `b` | gauge | | B. |\n\nafter\n| other | table |\n"
    );
    let (before, rows, after) = split(&readme);
    assert!(before.ends_with("text\n\n"));
    assert_eq!(rows, ["| `a` | gauge | | A. |", "| `b` | gauge | | B. |"]);
    assert_eq!(after, "\nafter\n| other | table |\n");
}

/// Every family tier1 registers has a non-empty HELP and is named `tier1_*` (or the standard
/// `process_*`), and the breaker's model is `model`, as in every other family.
#[test]
fn every_family_is_named_and_helped() {
    for d in everything().families() {
        assert!(d.name.starts_with("tier1_") || d.name.starts_with("process_"), "{}", d.name);
        assert!(!d.help.is_empty(), "{}", d.name);
        if d.name != "tier1_breaker_state" {
            assert!(!d.labels.iter().any(|l| l == "target"), "{}: target is model", d.name);
        }
    }
}

#[test]
fn build_info_names_the_version_and_revision() {
    let text = String::from_utf8(Metrics::new().unwrap().encode()).unwrap();
    let line = text.lines().find(|l| l.starts_with("tier1_build_info{")).unwrap();
    let revision = line.split("revision=\"").nth(1).unwrap().split('"').next().unwrap();
    // Built from a checkout (as CI is): the commit's hash; from a tarball: `unknown`.
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8(o.stdout).unwrap().trim().to_owned());
    match option_env!("TIER1_COMMIT").filter(|c| !c.is_empty()) {
        Some(c) => assert_eq!(Some(revision), c.split_whitespace().next()),
        None => assert_eq!(revision, head.as_deref().unwrap_or("unknown")),
    }
    assert!(line.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))), "{line}");
}

#[test]
fn a_failed_reload_clears_last_reload_successful_until_one_succeeds() {
    let m = Metrics::new().unwrap();
    let value = |m: &Metrics| m.config_last_reload_successful.get();
    assert_eq!(value(&m), 1, "the config at start loaded");
    m.reloaded("error");
    assert_eq!(value(&m), 0);
    m.reloaded("unchanged");
    assert_eq!(value(&m), 1, "the file is the running config again");
    m.reloaded("error");
    m.reloaded("ok");
    assert_eq!(value(&m), 1);
    assert_eq!(m.config_reloads_total.get(labels::Outcome { result: "error" }).get(), 2);
}
