//! `kind = "openai"`: OpenAI and every OpenAI-compatible API (vLLM, Ollama, LiteLLM, ...). It is
//! the defaults of [`Kind`]: a bearer token and one fixed path per operation under `base_url`.

use super::{BaseUrl, Kind, Wire};

/// The `openai` kind.
pub(crate) struct OpenAi;

impl Kind for OpenAi {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn wire(&self) -> Wire {
        Wire::OpenAi
    }

    fn base_url(&self) -> BaseUrl {
        BaseUrl::Default("https://api.openai.com/v1")
    }
}

#[cfg(test)]
mod tests {
    use http::header::AUTHORIZATION;

    use super::*;
    use crate::providers::{Operation, Settings};

    const SETTINGS: Settings<'static> = Settings { api_version: "v", anthropic_version: "a", project: "", location: "" };

    #[test]
    fn urls_are_fixed_paths_under_the_base() {
        let base = "http://127.0.0.1:9/v1/".parse().unwrap();
        let e = OpenAi.endpoints(&base, &SETTINGS).unwrap();
        let uri = |op, stream| e.uri(op, stream, "any/model?x").unwrap().to_string();
        assert_eq!(uri(Operation::Chat, false), "http://127.0.0.1:9/v1/chat/completions");
        assert_eq!(uri(Operation::Chat, true), "http://127.0.0.1:9/v1/chat/completions");
        assert_eq!(uri(Operation::Embeddings, false), "http://127.0.0.1:9/v1/embeddings");
        assert_eq!(uri(Operation::Responses, true), "http://127.0.0.1:9/v1/responses");
        assert_eq!(OpenAi.body_model(Operation::Responses, "gpt-4o", "dep"), "gpt-4o");
    }

    #[test]
    fn keys_go_as_bearer_tokens() {
        assert_eq!(OpenAi.auth("sk-1"), (AUTHORIZATION, "Bearer sk-1".to_owned()));
        assert!(OpenAi.headers(&SETTINGS).unwrap().is_empty());
    }

    #[test]
    fn any_direct_model_name_goes_in_the_body() {
        assert!(OpenAi.direct_model("org/model:tag"));
        assert_eq!(OpenAi.base_url(), BaseUrl::Default("https://api.openai.com/v1"));
    }
}
