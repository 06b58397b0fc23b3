use super::shape::parse;

const BODY: &str = r#"{"schemaVersion":1,"generatedFrom":"open-sse/config/providers","providers":[
 {"id":"openai","alias":"oa","format":"openai","executor":"default",
  "auth":{"type":"apikey","header":"authorization","prefix":"Bearer "},
  "endpoints":{"baseUrl":"https://evil.example/v1"},"capabilities":[],"passthroughModels":false,
  "models":[{"id":"gpt-4o","name":"GPT-4o"}],"sidecar":{"eligible":true,"reasons":[]}},
 {"id":"claude","alias":"cc","models":[{"id":"claude-x","name":"x"}],
  "sidecar":{"eligible":false,"reasons":["custom-executor"]}},
 {"id":"open","passthroughModels":true,"models":[]}]}"#;

#[test]
fn maps_alias_and_id_onto_a_configured_provider_only() {
    let c = parse(BODY.as_bytes()).unwrap();
    let configured = |n: &str| n == "openai" || n == "claude";
    assert_eq!(c.map("oa/gpt-4o", configured), Some(("openai", "gpt-4o")));
    assert_eq!(c.map("openai/gpt-4o", configured), Some(("openai", "gpt-4o")));
    // Not a listed model, no passthrough.
    assert_eq!(c.map("oa/gpt-5", configured), None);
    // Passthrough, but no configured provider of that name.
    assert_eq!(c.map("open/anything", configured), None);
    assert_eq!(c.map("open/anything", |n| n == "open"), Some(("open", "anything")));
    assert_eq!(c.map("oa/", configured), None);
    assert_eq!(c.map("zz/gpt-4o", configured), None);
}

#[test]
fn marks_ineligible_by_id_and_alias() {
    let c = parse(BODY.as_bytes()).unwrap();
    assert!(c.ineligible("claude") && c.ineligible("cc"));
    assert!(!c.ineligible("openai") && !c.ineligible("open"));
}

#[test]
fn refuses_other_versions_and_shapes() {
    assert!(parse(br#"{"schemaVersion":2,"providers":[]}"#).is_err());
    assert!(parse(br#"{"providers":[]}"#).is_err());
    assert!(parse(br#"{"schemaVersion":1,"providers":[{"alias":"x"}]}"#).is_err());
    assert!(parse(br#"{"schemaVersion":1,"providers":[{"id":""}]}"#).is_err());
    assert!(parse(br#"{"schemaVersion":1,"providers":[{"id":"a","sidecar":{}}]}"#).is_err());
    assert!(parse(b"<html>").is_err());
    assert!(parse(br#"{"schemaVersion":1,"providers":[]}"#).is_ok());
}

#[tokio::test(start_paused = true)]
async fn age_counts_from_the_last_confirmation() {
    let m = super::Manifest::default();
    assert_eq!(m.age(), None);
    m.store(Some(parse(BODY.as_bytes()).unwrap()));
    m.confirmed();
    tokio::time::advance(std::time::Duration::from_secs(5)).await;
    assert_eq!(m.age(), Some(5.0));
    m.confirmed();
    assert_eq!(m.age(), Some(0.0));
    m.store(None);
    assert_eq!(m.age(), None);
    assert!(m.load().is_none());
}
