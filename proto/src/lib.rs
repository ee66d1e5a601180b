//! Generated types and service stubs of the Sluice gRPC API, `sluice.v1`.
//!
//! The `.proto` file under `proto/sluice/v1/` is the source of truth and documents every
//! message and field. [`error_status`] and [`error_detail`] put an `ErrorDetail` into a
//! status and read it back, as the `.proto` describes.

mod error_details;

pub use error_details::{error_detail, error_status};

#[allow(missing_debug_implementations, clippy::all)]
pub mod v1 {
    tonic::include_proto!("sluice.v1");
}

/// Encoded `FileDescriptorSet` of the API, for the gRPC reflection service.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("sluice_descriptor");
