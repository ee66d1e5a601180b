//! How an [`ErrorDetail`] travels in a gRPC status: gRPC's rich error model.
//!
//! The `grpc-status-details-bin` trailer holds a `google.rpc.Status` with the status's
//! own code and message, whose `details` hold one `google.protobuf.Any` packing the
//! [`ErrorDetail`]. That is what grpcio-status, tonic-types and grpc-go's `status`
//! package read, so a client in any language finds the detail where it looks first.

use prost::{Message, Name};
use prost_types::Any;

use crate::v1::ErrorDetail;

/// `type.googleapis.com/sluice.v1.ErrorDetail`, the type URL of a packed detail.
impl Name for ErrorDetail {
    const NAME: &'static str = "ErrorDetail";
    const PACKAGE: &'static str = "sluice.v1";

    // prost's default has no host; every other implementation (and the `Any`
    // documentation) writes `type.googleapis.com/`.
    fn type_url() -> String {
        format!("type.googleapis.com/{}", Self::full_name())
    }
}

/// A status with `code` and `message` whose details carry `detail`.
pub fn error_status(code: tonic::Code, message: impl Into<String>, detail: &ErrorDetail) -> tonic::Status {
    let message = message.into();
    let envelope = tonic_types::Status {
        code: code as i32,
        message: message.clone(),
        details: vec![Any { type_url: ErrorDetail::type_url(), value: detail.encode_to_vec() }],
    };
    tonic::Status::with_details(code, message, envelope.encode_to_vec().into())
}

/// The [`ErrorDetail`] a status carries; `None` when it carries none (a status made by
/// gRPC itself, such as a transport failure, or by a server that is not a broker).
pub fn error_detail(status: &tonic::Status) -> Option<ErrorDetail> {
    let envelope = tonic_types::Status::decode(status.details()).ok()?;
    envelope.details.iter().find_map(|any| any.to_msg::<ErrorDetail>().ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use tonic::Code;

    use super::*;
    use crate::v1::ErrorCode;

    fn out_of_range() -> ErrorDetail {
        ErrorDetail {
            code: ErrorCode::OffsetOutOfRange as i32,
            log_start_offset: 3,
            high_watermark: 7,
            leader_id: -1,
            ..Default::default()
        }
    }

    #[test]
    fn the_details_are_a_google_rpc_status_with_the_detail_packed_in_an_any() {
        let s = error_status(Code::OutOfRange, "offset 9 is out of range", &out_of_range());
        assert_eq!((s.code(), s.message()), (Code::OutOfRange, "offset 9 is out of range"));
        let envelope = tonic_types::Status::decode(s.details()).expect("google.rpc.Status");
        assert_eq!(envelope.code, Code::OutOfRange as i32);
        assert_eq!(envelope.message, "offset 9 is out of range");
        assert_eq!(envelope.details.len(), 1);
        assert_eq!(envelope.details[0].type_url, "type.googleapis.com/sluice.v1.ErrorDetail");
        assert_eq!(ErrorDetail::decode(envelope.details[0].value.as_slice()).unwrap(), out_of_range());
    }

    #[test]
    fn the_detail_is_read_back_among_other_details() {
        let s = error_status(Code::OutOfRange, "m", &out_of_range());
        assert_eq!(error_detail(&s), Some(out_of_range()));

        // Another server may put more details first; the Sluice one is still found.
        let other = Any { type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(), value: vec![10, 1, b'x'] };
        let mine = Any { type_url: ErrorDetail::type_url(), value: out_of_range().encode_to_vec() };
        let envelope = tonic_types::Status { code: 11, message: "m".into(), details: vec![other, mine] };
        let s = tonic::Status::with_details(Code::OutOfRange, "m", envelope.encode_to_vec().into());
        assert_eq!(error_detail(&s), Some(out_of_range()));
    }

    #[test]
    fn statuses_without_a_sluice_detail_have_none() {
        assert_eq!(error_detail(&tonic::Status::unavailable("connection refused")), None);
        let envelope = tonic_types::Status {
            code: 14,
            message: "m".into(),
            details: vec![Any { type_url: "type.googleapis.com/google.rpc.RetryInfo".into(), value: vec![] }],
        };
        let s = tonic::Status::with_details(Code::Unavailable, "m", envelope.encode_to_vec().into());
        assert_eq!(error_detail(&s), None);
        let garbage = tonic::Status::with_details(Code::Internal, "m", vec![0xff, 0xff, 0xff].into());
        assert_eq!(error_detail(&garbage), None);
    }
}
