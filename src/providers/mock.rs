//! `kind = "mock"`: the built-in provider that answers in process (see [`crate::mock`]), from its
//! `mock` settings; it takes no base URL and makes no network call.

use super::{BaseUrl, Kind, Wire};

/// The `mock` kind.
pub(crate) struct Mock;

impl Kind for Mock {
    fn name(&self) -> &'static str {
        "mock"
    }

    fn wire(&self) -> Wire {
        Wire::Client
    }

    fn base_url(&self) -> BaseUrl {
        BaseUrl::InProcess
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{Operation, ProviderKind};

    #[test]
    fn answers_in_process_every_operation_natively() {
        assert!(ProviderKind::Mock.in_process());
        assert!(!ProviderKind::OpenAi.in_process());
        for op in [Operation::Chat, Operation::Embeddings, Operation::Messages, Operation::Responses] {
            assert!(Mock.wire().speaks(op));
        }
    }
}
