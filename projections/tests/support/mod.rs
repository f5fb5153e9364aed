//! What the projection tests share.

use anyhow::Result;
use notesaga_log::FlowEvent;
use notesaga_projections::{notes, ReadStore};
use uuid::Uuid;

/// Folds `records` through the projection's own `apply`, in one transaction, each at the
/// next offset.
pub(crate) async fn fold(store: &ReadStore, records: Vec<FlowEvent>) -> Result<()> {
    let mut tx = store.pool().begin().await?;
    for (offset, record) in records.iter().enumerate() {
        notes::apply(&mut tx, record, Uuid::new_v4(), offset as i64).await?;
    }
    tx.commit().await?;
    Ok(())
}
