use super::*;

#[test]
fn every_kind_is_found_by_its_spelling() {
    for &kind in ProviderKind::ALL {
        assert_eq!(ProviderKind::parse(kind.as_str()), Some(kind));
    }
    assert_eq!(ProviderKind::parse("OpenAI"), None);
    assert_eq!(ProviderKind::parse(""), None);
}

/// Pins the `unknown provider kind` message: a new kind adds its name here.
#[test]
fn names_list_every_kind_for_an_error_message() {
    assert_eq!(ProviderKind::names(), "openai, anthropic, azure, gemini, bedrock, vertex or mock");
}

#[test]
fn base_url_is_the_files_the_kinds_default_or_refused() {
    let k = |kind: ProviderKind, raw| kind.base_url(raw, None).map(|u| u.map(|u| u.into_owned()));
    assert_eq!(k(ProviderKind::OpenAi, None), Ok(Some("https://api.openai.com/v1".into())));
    assert_eq!(
        k(ProviderKind::OpenAi, Some("http://127.0.0.1:9/v1")),
        Ok(Some("http://127.0.0.1:9/v1".into()))
    );
    assert_eq!(k(ProviderKind::Anthropic, None), Ok(Some("https://api.anthropic.com".into())));
    assert_eq!(k(ProviderKind::Gemini, None), Ok(Some("https://generativelanguage.googleapis.com".into())));
    assert_eq!(k(ProviderKind::Azure, None), Err("missing (https://RESOURCE.openai.azure.com)".to_owned()));
    assert_eq!(
        k(ProviderKind::Azure, Some("https://r.openai.azure.com")),
        Ok(Some("https://r.openai.azure.com".into()))
    );
    assert_eq!(k(ProviderKind::Mock, None), Ok(None));
    let regional =
        |raw, region| ProviderKind::Bedrock.base_url(raw, region).map(|u| u.map(|u| u.into_owned()));
    assert_eq!(
        regional(None, Some("eu-west-3")),
        Ok(Some("https://bedrock-runtime.eu-west-3.amazonaws.com".into()))
    );
    assert_eq!(
        regional(Some("http://127.0.0.1:9"), Some("us-east-1")),
        Ok(Some("http://127.0.0.1:9".into()))
    );
    assert_eq!(regional(None, None), Err("missing, and no region to make it from".to_owned()));
    let located = |raw, loc| ProviderKind::Vertex.base_url(raw, loc).map(|u| u.map(|u| u.into_owned()));
    assert_eq!(located(None, Some("global")), Ok(Some("https://aiplatform.googleapis.com".into())));
    assert_eq!(
        located(None, Some("us-east5")),
        Ok(Some("https://us-east5-aiplatform.googleapis.com".into()))
    );
    assert_eq!(located(Some("http://127.0.0.1:9"), Some("global")), Ok(Some("http://127.0.0.1:9".into())));
    assert_eq!(located(None, None), Err("missing, and no location to make it from".to_owned()));
    assert_eq!(
        k(ProviderKind::Mock, Some("http://x")),
        Err("a mock provider answers in process and takes no base_url".to_owned())
    );
}

#[test]
fn only_anthropic_bedrock_and_vertex_lack_embeddings_and_every_kind_speaks_responses() {
    for &kind in ProviderKind::ALL {
        for model in ["gemini-2.5-flash", "claude-sonnet-4@20250514"] {
            let serves = |op| kind.spec().serves(op, model);
            assert!(serves(Operation::Chat) && serves(Operation::Messages), "{kind:?}");
            assert_eq!(
                serves(Operation::Embeddings),
                !matches!(kind, ProviderKind::Anthropic | ProviderKind::Bedrock | ProviderKind::Vertex),
                "{kind:?}"
            );
            // Natively to OpenAI-wire kinds, translated through chat to Anthropic and Gemini.
            assert!(serves(Operation::Responses), "{kind:?}");
        }
    }
}

#[test]
fn path_safe_names_stay_in_one_segment() {
    for good in ["gemini-2.5-flash", "gemini_embedding.001", "a", "a..b", ".a", "v1.2"] {
        assert!(path_safe(good), "{good:?}");
    }
    for bad in ["", ".", "..", "...", "a/b", "../x", "a?b", "a#b", "a%2e", "a b", "é", "a:b"] {
        assert!(!path_safe(bad), "{bad:?}");
    }
}

#[test]
fn only_azure_and_vertex_refuse_direct_models_at_routing() {
    for &kind in ProviderKind::ALL {
        let refuses = matches!(kind, ProviderKind::Azure | ProviderKind::Vertex);
        assert_eq!(kind.spec().direct_model("a/../b"), !refuses, "{kind:?}");
        assert!(kind.spec().direct_model("gpt-4o"), "{kind:?}");
    }
}
