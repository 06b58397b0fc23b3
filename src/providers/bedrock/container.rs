//! Credentials from the container credentials endpoint, as ECS task roles
//! (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, under `http://169.254.170.2`) and EKS Pod
//! Identity (`AWS_CONTAINER_CREDENTIALS_FULL_URI`, its host checked at load, with
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`) serve them: a GET, with `Authorization` from the
//! token file read anew at each fetch (EKS rotates it) or from
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN`, answered `{AccessKeyId, SecretAccessKey, Token,
//! Expiration}`. A [`Source`] for the background refresher.

use bytes::Bytes;
use http::{HeaderValue, Request, header};

use super::credentials::{FetchError, call, json_credentials, lifetime, read_token};
use super::sigv4::AwsKey;
use crate::config::{ContainerCredentials, ContainerToken, Secret};
use crate::providers::refresh::{Fetched, Source};
use crate::upstream;

/// What the log calls the endpoint.
const ENDPOINT: &str = "container credentials endpoint";

impl Source for ContainerCredentials {
    type Value = AwsKey;
    type Error = FetchError;

    /// The URL and where the token comes from (never the token).
    fn identity(&self) -> String {
        match &self.authorization {
            Some(ContainerToken::File(path)) => format!("container {} token file {}", self.url, path.display()),
            Some(ContainerToken::Value(_)) => format!("container {} token", self.url),
            None => format!("container {}", self.url),
        }
    }

    async fn fetch(&self, client: &upstream::Client) -> Result<Fetched<AwsKey>, FetchError> {
        let mut req = Request::get(self.url.as_str())
            .header(header::ACCEPT, HeaderValue::from_static("application/json"))
            .body(Bytes::new())
            .map_err(|_| FetchError::Unreachable(ENDPOINT))?;
        let token = match &self.authorization {
            Some(ContainerToken::File(path)) => Some(read_token(path).await?),
            Some(ContainerToken::Value(token)) => Some(token.expose().to_owned()),
            None => None,
        };
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(&token).map_err(|_| FetchError::TokenValue(ENDPOINT))?;
            value.set_sensitive(true);
            req.headers_mut().insert(header::AUTHORIZATION, value);
        }
        let body = call(client, req, ENDPOINT).await?;
        let (value, expires) = json_credentials(&body).ok_or(FetchError::Answer(ENDPOINT))?;
        Ok(Fetched { value, valid_for: lifetime(expires) })
    }

    fn secrets(key: &AwsKey) -> Vec<Secret> {
        key.secrets()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::mock::aws::CONTAINER_PATH;
    use crate::mock::server::{MockConfig, MockUpstream};

    #[tokio::test]
    async fn the_token_file_is_read_anew_at_each_fetch_and_the_lifetime_is_the_answers() {
        let file = std::env::temp_dir().join(format!("tier1-container-token-{}", std::process::id()));
        std::fs::write(&file, "eks-token-1\n").unwrap();
        let config = MockConfig::default().container_credentials(&["eks-token-1", "eks-token-2"], "ASIAC", "s3");
        let mock = MockUpstream::start(config).await.unwrap();
        let source = ContainerCredentials {
            url: format!("{}{CONTAINER_PATH}", mock.url()),
            authorization: Some(ContainerToken::File(file.clone())),
        };
        let client = upstream::Client::plain(Duration::from_secs(1));
        let first = source.fetch(&client).await.unwrap();
        assert_eq!(first.value.access_key_id, "ASIAC");
        // The mock's credentials are valid for an hour: refreshed 55 minutes from now.
        assert!((3590..=3600).contains(&first.valid_for.as_secs()), "{:?}", first.valid_for);
        std::fs::write(&file, "eks-token-2").unwrap();
        source.fetch(&client).await.unwrap();
        std::fs::write(&file, "eks-token-3").unwrap();
        let refused = source.fetch(&client).await.err().unwrap().to_string();
        assert_eq!(refused, "container credentials endpoint answered 401");
        let sent: Vec<_> = mock.stats.requests().iter().map(|r| r.headers["authorization"].clone()).collect();
        assert_eq!(sent, ["eks-token-1", "eks-token-2", "eks-token-3"]);
        std::fs::remove_file(&file).unwrap();
        let gone = source.fetch(&client).await.err().unwrap().to_string();
        assert!(gone.starts_with("token file: "), "{gone}");
        assert_eq!(mock.stats.snapshot().aws_credentials_served, 2);
    }
}
