//! The Fetch route. Today tansu's own: the server's route table takes it from here so the
//! Fetch implementation can be replaced without touching the assembly.

use tansu_broker::Error;
use tansu_service::FrameRouteBuilder;
use tansu_storage::Storage;

/// Adds the Fetch route over `storage` to `builder`.
pub(crate) fn route<S: Storage>(
    builder: FrameRouteBuilder<(), Error>,
    storage: S,
) -> Result<FrameRouteBuilder<(), Error>, Error> {
    tansu_broker::service::storage::fetch(builder, storage)
}
