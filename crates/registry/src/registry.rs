//! The [`Registry`] handle: opens the topic, replays it, keeps following it, and turns
//! every write into records that are durable on the broker before anyone sees them.

use std::{
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use tokio::sync::{watch, Mutex};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{
    compat::CompatibilityLevel,
    error::{ApiError, Error, Rejection, Result},
    records::Record,
    store::{Candidate, RegisterPlan, Store, VersionSpec},
    topic::{self, TopicLog},
    RegistryConfig,
};

/// How long replaying the topic, or reading up to a just-written record, may take.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// The state shared by the request handlers and the task following the topic.
#[derive(Debug)]
pub(crate) struct Shared {
    store: RwLock<Store>,
    /// The store's next offset, for waiting until a record has been folded in.
    applied: watch::Sender<i64>,
}

impl Shared {
    fn new() -> Self {
        Self {
            store: RwLock::new(Store::default()),
            applied: watch::Sender::new(0),
        }
    }

    fn read<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        // Folding a record has no panicking paths; should one appear, answering from the
        // last state beats failing every request from then on.
        f(&self.store.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn update(&self, f: impl FnOnce(&mut Store)) {
        let next = {
            let mut store = self.store.write().unwrap_or_else(PoisonError::into_inner);
            f(&mut store);
            store.next_offset()
        };
        self.applied.send_if_modified(|applied| {
            let changed = *applied != next;
            *applied = next;
            changed
        });
    }

    /// Folds in a record the reader consumed.
    pub(crate) fn apply(&self, offset: i64, record: &Record) {
        self.update(|store| {
            store.apply_at(offset, record);
        });
    }

    /// Folds in a record this instance just wrote, if it is the very next one; otherwise
    /// records written by others come first and the reader will get to it.
    fn apply_own(&self, offset: i64, record: &Record) {
        self.update(|store| {
            if store.next_offset() == offset {
                store.apply_at(offset, record);
            }
        });
    }

    /// Waits until every record before `offset` is folded in.
    async fn wait_for(&self, topic: &str, offset: i64) -> Result<()> {
        let mut applied = self.applied.subscribe();
        let reached =
            tokio::time::timeout(CATCH_UP_TIMEOUT, applied.wait_for(|next| *next >= offset))
                .await
                .map(|waited| waited.is_ok());
        match reached {
            Ok(true) => Ok(()),
            // The sender lives in `self`, so the wait can only end by timing out.
            Ok(false) | Err(_) => Err(Error::CatchUpTimeout {
                topic: topic.to_owned(),
                offset,
                waited: CATCH_UP_TIMEOUT,
            }),
        }
    }
}

/// A running schema registry: the in-memory state, kept equal to the `_schemas` topic.
///
/// Cheap to clone; the task following the topic stops when the last clone is dropped.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    log: TopicLog,
    /// One write at a time per instance, so ids and versions are assigned from a state
    /// that already holds the previous write.
    writing: Mutex<()>,
    _stop_following: DropGuard,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("topic", &self.inner.log.topic())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Connects to the broker, creates the topic (one partition, compacted) if it is
    /// missing, replays it to its end, and keeps following it in a background task, so
    /// that several registry instances on the same topic converge.
    pub async fn open(config: RegistryConfig) -> Result<Registry> {
        let (log, consumer) = TopicLog::connect(&config).await?;
        let shared = Arc::new(Shared::new());
        let stop = CancellationToken::new();
        tokio::spawn(topic::follow(
            consumer,
            config.topic.clone(),
            shared.clone(),
            stop.clone(),
        ));
        let registry = Registry {
            inner: Arc::new(Inner {
                shared,
                log,
                writing: Mutex::new(()),
                _stop_following: stop.drop_guard(),
            }),
        };
        registry.catch_up().await?;
        tracing::info!(
            messaging.destination.name = %config.topic,
            subjects = registry.read(|store| store.subjects(true, "").len()),
            "schema registry loaded"
        );
        Ok(registry)
    }

    /// Runs `f` on the current state.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        self.inner.shared.read(f)
    }

    /// Reads the topic up to its current end.
    ///
    /// The end is found as Confluent's registry finds it: append a `NOOP` record and read
    /// up to it. The high watermark would not do, because compaction may remove the last
    /// records below it (an old tombstone), leaving nothing to read that reaches it.
    async fn catch_up(&self) -> Result<()> {
        self.append(&Record::Noop).await
    }

    /// Appends a record, folds it in, and waits until it (and whatever other instances
    /// wrote before it) is part of the state.
    async fn append(&self, record: &Record) -> Result<()> {
        let offset = self.inner.log.append(record).await?;
        self.inner.shared.apply_own(offset, record);
        self.inner
            .shared
            .wait_for(self.inner.log.topic(), offset + 1)
            .await
    }

    /// Plans a write against the latest state and appends its records in order; each is
    /// acknowledged by the broker and folded in before the next, and before answering.
    async fn write<T>(
        &self,
        plan: impl FnOnce(&Store) -> Result<(T, Vec<Record>), Rejection>,
    ) -> Result<T, ApiError> {
        let _writing = self.inner.writing.lock().await;
        // Another instance may have written since this one last read.
        self.catch_up().await?;
        let (answer, records) = self.read(plan)?;
        for record in records {
            self.append(&record).await?;
        }
        Ok(answer)
    }

    /// Registers a schema under a subject and returns its id.
    pub(crate) async fn register(
        &self,
        subject: &str,
        candidate: &Candidate,
    ) -> Result<u32, ApiError> {
        // Producers re-register their schema on every start: answer those from memory.
        if let Ok(found) = self.read(|store| store.lookup(subject, candidate, false)) {
            return Ok(found.id);
        }
        let id = self
            .write(|store| match store.plan_register(subject, candidate)? {
                RegisterPlan::Existing(id) => Ok((id, Vec::new())),
                RegisterPlan::New(value) => Ok((value.id, vec![Record::Schema(value)])),
            })
            .await?;
        tracing::info!(subject, id, "registered a schema");
        Ok(id)
    }

    pub(crate) async fn delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<Vec<u32>, ApiError> {
        let versions = self
            .write(|store| store.plan_delete_subject(subject, permanent))
            .await?;
        tracing::info!(subject, ?versions, permanent, "deleted a subject");
        Ok(versions)
    }

    pub(crate) async fn delete_version(
        &self,
        subject: &str,
        spec: VersionSpec,
        permanent: bool,
    ) -> Result<u32, ApiError> {
        let version = self
            .write(|store| {
                let (version, record) = store.plan_delete_version(subject, spec, permanent)?;
                Ok((version, vec![record]))
            })
            .await?;
        tracing::info!(subject, version, permanent, "deleted a version");
        Ok(version)
    }

    /// Sets the global level (`subject: None`) or a subject's.
    pub(crate) async fn set_level(
        &self,
        subject: Option<&str>,
        level: CompatibilityLevel,
    ) -> Result<(), ApiError> {
        let record = Record::Config {
            subject: subject.map(str::to_owned),
            level,
        };
        self.write(|_| Ok(((), vec![record]))).await?;
        tracing::info!(subject, %level, "set a compatibility level");
        Ok(())
    }

    /// Removes the global level (back to the default) or a subject's (back to the global
    /// one); returns the level that was in force.
    pub(crate) async fn delete_level(
        &self,
        subject: Option<&str>,
    ) -> Result<CompatibilityLevel, ApiError> {
        self.write(|store| {
            let record = Record::ConfigTombstone {
                subject: subject.map(str::to_owned),
            };
            match subject {
                None => Ok((store.global_level(), vec![record])),
                Some(subject) => {
                    let level = store
                        .subject_level(subject)
                        .ok_or_else(|| Rejection::SubjectLevelNotConfigured(subject.to_owned()))?;
                    Ok((level, vec![record]))
                }
            }
        })
        .await
    }
}
