//! Broker connection settings.

use rdkafka::ClientConfig;

/// How to reach the Kafka cluster, plus librdkafka settings passed through unchanged.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `HOST:PORT[,HOST:PORT…]` of the brokers.
    pub bootstrap_servers: String,
    /// Extra librdkafka settings (`key=value`), applied last so they win.
    pub overrides: Vec<(String, String)>,
    /// Static group membership (`group.instance.id`) for this process's consumers. A
    /// restarted process with the same id takes its old place at once; on the tansu
    /// single-node broker it is also the only way a crashed group *leader* is replaced
    /// (see docs/field-notes.md). Each running instance of a role needs its own id.
    pub instance_id: Option<String>,
    /// Replicas of every topic notesaga creates: 1 on the single node, 3 on a typical
    /// production cluster (a topic that exists already keeps its own).
    pub replication_factor: i32,
    /// `min.insync.replicas` of every topic notesaga creates: with `acks=all`, how many
    /// replicas must have a write before it is acknowledged. 1 (Kafka's own default) is
    /// not written into the topic's configuration.
    pub min_insync_replicas: i32,
}

impl KafkaConfig {
    /// Settings for a broker at `bootstrap_servers` and no overrides.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            overrides: Vec::new(),
            instance_id: None,
            replication_factor: 1,
            min_insync_replicas: 1,
        }
    }

    /// The settings every client starts from, the overrides included (a reader or an
    /// admin client needs `security.protocol` and the like as much as a consumer does;
    /// librdkafka ignores, with a warning, a producer-only setting on a consumer).
    pub fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            // librdkafka logs through its own channel; errors surface as results.
            .set("log_level", "3")
            // Saga hops are small requests answered at once; Nagle's algorithm would
            // hold each behind the previous one's delayed ACK (tens of ms).
            .set("socket.nagle.disable", "true");
        self.apply_overrides(config)
    }

    /// An idempotent, `acks=all` producer. The Java-compatible murmur2 partitioner keeps
    /// one note on the same partition number whichever client (ours, an analyst's
    /// confluent-kafka, Kafka Connect) produces it.
    pub fn producer(&self) -> ClientConfig {
        let mut config = self.client();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            // No waiting to fill a batch: a saga is a chain of single records, and each
            // hop would pay the linger. Under load librdkafka still batches what queues
            // up while a request is in flight.
            .set("linger.ms", "0")
            .set("message.timeout.ms", "30000");
        self.apply_overrides(config)
    }

    /// A consumer in `group` that commits only offsets the loop has stored, i.e. offsets
    /// of records whose outcome is durable.
    pub fn consumer(&self, group: &str) -> ClientConfig {
        let mut config = self.client();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("enable.partition.eof", "false")
            // notesaga-broker (like Kafka) answers a waiting fetch as soon as a record
            // is appended, so this only bounds how often an idle consumer asks: it
            // adds nothing to a saga hop. (On tansu's own Fetch, which sleeps through
            // the wait, lower it with --kafka-option fetch.wait.max.ms=…)
            .set("fetch.wait.max.ms", "500")
            // Range assigns the same partition numbers of every subscribed topic to the
            // same member, which co-partitioned, note-keyed topics rely on.
            .set("partition.assignment.strategy", "range");
        if let Some(instance_id) = &self.instance_id {
            config.set("group.instance.id", format!("{group}.{instance_id}"));
        }
        self.apply_overrides(config)
    }

    /// [`Self::consumer`] with a role's own `defaults` on top, still below the overrides:
    /// `--kafka-option` wins over a role's tuning as over everything else.
    pub fn consumer_with(&self, group: &str, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = self.consumer(group);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        self.apply_overrides(config)
    }

    fn apply_overrides(&self, mut config: ClientConfig) -> ClientConfig {
        for (key, value) in &self.overrides {
            config.set(key, value);
        }
        config
    }
}
