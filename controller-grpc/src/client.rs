//! A client of the controller service: the connection is made lazily (and remade after
//! a failure) by tonic, so a broker may start before its controller.

use tonic::transport::{Channel, Endpoint};

use crate::pb::controller_client::ControllerClient;

/// A client for the controller at `address` (`HOST:PORT` or a URL). Fails only when the
/// address is malformed; the connection itself is made on first use.
pub fn connect(address: &str) -> Result<ControllerClient<Channel>, tonic::transport::Error> {
    let url = if address.contains("://") { address.to_string() } else { format!("http://{address}") };
    let channel =
        Endpoint::from_shared(url)?.connect_timeout(std::time::Duration::from_secs(1)).tcp_nodelay(true).connect_lazy();
    Ok(ControllerClient::new(channel))
}
