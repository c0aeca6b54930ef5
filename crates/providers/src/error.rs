//! [`ProviderError`]: failures of a provider.

/// A provider failure.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("provider {provider}: configuration: {reason}")]
    Config {
        provider: &'static str,
        reason: String,
    },
    #[error("provider {provider}: the pipeline stopped accepting frames")]
    OutputClosed { provider: &'static str },
}

impl ProviderError {
    /// Whether the provider may succeed if started again unchanged.
    pub fn is_retryable(&self) -> bool {
        false
    }
}
