//! The client's error type. Broker errors keep their gRPC code, the broker's
//! machine-readable [`ErrorCode`] and details (valid offset range, leader).

use sluice_core::BatchError;
use sluice_proto::v1::{ErrorCode, ErrorDetail};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The broker refused the request; `message` is written for people.
    #[error("{message}")]
    Broker { code: tonic::Code, kind: ErrorCode, message: String, detail: Box<ErrorDetail> },
    #[error("cannot connect to broker at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// The connection failed during a request (broker gone, network).
    #[error("request to broker failed: {0}")]
    Transport(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("the broker returned data that fails its checks: {0}")]
    Corrupt(#[from] BatchError),
    /// The producer could not encode (compress) a batch.
    #[error("cannot encode a batch: {0}")]
    Encode(BatchError),
    #[error("the producer is closed")]
    Closed,
    /// A group consumer has no committed offset for a partition and
    /// `auto_offset_reset` is `None`.
    #[error("group '{group}' has no committed offset for {topic}-{partition} and auto.offset.reset is none")]
    NoCommittedOffset { group: String, topic: String, partition: u32 },
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The producer gave up on a record: it was not acknowledged within the delivery
    /// timeout [delivery.timeout.ms], counted from when the record was appended, across
    /// every retry. `last` is the error of the last attempt (none if it was never sent).
    #[error("{}", delivery_timeout_message(*.timeout, *.attempts, .last.as_deref()))]
    DeliveryTimeout { timeout: std::time::Duration, attempts: u32, last: Option<Box<ClientError>> },
}

fn delivery_timeout_message(timeout: std::time::Duration, attempts: u32, last: Option<&ClientError>) -> String {
    let head = format!("record not acknowledged within the delivery timeout of {timeout:?}");
    match (attempts, last) {
        (0, _) | (_, None) => format!("{head} (never sent: earlier batches of its partition were still in flight)"),
        (1, Some(e)) => format!("{head} (1 attempt; last error: {e})"),
        (n, Some(e)) => format!("{head} ({n} attempts; last error: {e})"),
    }
}

impl ClientError {
    /// The broker's error code, if the broker answered with an error.
    /// For a delivery timeout, the code of its last attempt's error.
    pub fn kind(&self) -> Option<ErrorCode> {
        match self.cause() {
            ClientError::Broker { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// The error behind this one: the last attempt's error of a delivery timeout (when
    /// the record was sent at all), else the error itself.
    pub fn cause(&self) -> &ClientError {
        match self {
            ClientError::DeliveryTimeout { last: Some(last), .. } => last.cause(),
            e => e,
        }
    }

    /// True when the same request may succeed if retried later.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Broker { code, detail, .. } => detail.retriable || matches!(code, tonic::Code::Unavailable),
            ClientError::Transport(_) | ClientError::Timeout(_) => true,
            _ => false,
        }
    }
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        // The detail travels packed in a google.rpc.Status (gRPC's rich error model).
        let detail = sluice_proto::error_detail(&s).unwrap_or_default();
        let kind = ErrorCode::try_from(detail.code).unwrap_or(ErrorCode::Unspecified);
        // Statuses that did not come from the broker's service (transport failures are
        // reported by tonic as Unavailable/Unknown without details).
        if kind == ErrorCode::Unspecified && matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown) {
            return ClientError::Transport(s.message().to_string());
        }
        ClientError::Broker { code: s.code(), kind, message: s.message().to_string(), detail: Box::new(detail) }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
