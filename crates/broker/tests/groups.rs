//! Consumer groups against the real `notesaga-broker` process, with members in their own
//! OS processes (confluent-kafka, `tests/support/kafka_client.py`) so a crash is a real
//! SIGKILL: a dynamic member's partitions are taken over after its session timeout and
//! consumption goes on from the committed offsets; a third member gets its share; a
//! static member restarted in time keeps its place without a rebalance, and one never
//! restarted is expired; list/describe from confluent-kafka's admin client show the
//! groups with their members.
//!
//! Every wait is for a condition, with a generous deadline; nothing asserts a duration.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};
use notesaga_testkit::{random_name, BrokerProcess};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    producer::{FutureProducer, FutureRecord},
    ClientConfig,
};
use serde_json::Value;

const PARTITIONS: i32 = 6;
/// Records produced to each partition per batch.
const PER_PARTITION: i64 = 5;
/// Dynamic members' session timeout: a killed member is expired after this.
const DYNAMIC_SESSION_MS: u32 = 6_000;
/// Static members': long enough for a restart to come back in time.
const STATIC_SESSION_MS: u32 = 15_000;
/// How long any condition may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(90);

/// The Python with confluent-kafka that `make test` installs (`make confluent-kafka`).
fn python() -> Result<PathBuf> {
    let path = std::env::var_os("NOTESAGA_TEST_PYTHON").map_or_else(
        || {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/notesaga-confluent-kafka/bin/python")
        },
        PathBuf::from,
    );
    ensure!(
        path.exists(),
        "{} is missing: run `make confluent-kafka` (part of `make test`)",
        path.display()
    );
    Ok(path)
}

fn client_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/kafka_client.py")
}

/// One group member process (SIGKILLed on drop) and the events it printed.
struct Member {
    process: Child,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Member {
    fn start(
        broker: &str,
        group: &str,
        topic: &str,
        session_ms: u32,
        instance: Option<&str>,
    ) -> Result<Self> {
        let mut command = Command::new(python()?);
        command
            .arg(client_script())
            .args(["member", broker, group, topic, &session_ms.to_string()])
            .args(instance)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut process = command.spawn().context("spawn the member process")?;
        let stdout = process.stdout.take().context("member stdout")?;
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<Value>(&line) {
                    sink.lock().expect("events").push(event);
                }
            }
        });
        Ok(Self { process, events })
    }

    fn events(&self) -> Vec<Value> {
        self.events.lock().expect("events").clone()
    }

    /// The partitions of the member's latest assignment (empty after a revocation).
    fn owned(&self) -> BTreeSet<i32> {
        let mut owned = BTreeSet::new();
        for event in self.events() {
            match event["event"].as_str() {
                Some("assigned") => owned = partitions(&event),
                Some("revoked") => owned.clear(),
                _ => {}
            }
        }
        owned
    }

    fn count(&self, kind: &str) -> usize {
        self.events().iter().filter(|e| e["event"] == kind).count()
    }

    /// (partition, offset) of every record the member consumed and committed.
    fn committed(&self) -> Vec<(i32, i64)> {
        self.of_kind("committed")
    }

    fn of_kind(&self, kind: &str) -> Vec<(i32, i64)> {
        self.events()
            .iter()
            .filter(|e| e["event"] == kind)
            .map(|e| (num(&e["partition"]) as i32, num(&e["offset"])))
            .collect()
    }

    /// SIGKILL, as a crash would.
    fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

fn num(value: &Value) -> i64 {
    value.as_i64().unwrap_or(-1)
}

fn partitions(event: &Value) -> BTreeSet<i32> {
    event["partitions"]
        .as_array()
        .map(|list| list.iter().map(|p| num(p) as i32).collect())
        .unwrap_or_default()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        if Instant::now() > deadline {
            bail!("gave up waiting {PATIENCE:?} for: {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A broker with a fresh 6-partition topic.
struct Fixture {
    broker: BrokerProcess,
    topic: String,
    runtime: tokio::runtime::Runtime,
    producer: FutureProducer,
}

impl Fixture {
    fn start() -> Result<Self> {
        let broker = BrokerProcess::start()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let topic = random_name("groups");
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", broker.addr())
            .create()?;
        let created = runtime.block_on(admin.create_topics(
            [&NewTopic::new(
                &topic,
                PARTITIONS,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        ))?;
        for result in created {
            result.map_err(|(topic, error)| anyhow::anyhow!("create {topic}: {error}"))?;
        }
        let producer = ClientConfig::new()
            .set("bootstrap.servers", broker.addr())
            .create()?;
        Ok(Self {
            broker,
            topic,
            runtime,
            producer,
        })
    }

    fn addr(&self) -> &str {
        self.broker.addr()
    }

    /// Produces [`PER_PARTITION`] records to every partition; returns their coordinates.
    fn produce_batch(&mut self) -> Result<BTreeSet<(i32, i64)>> {
        let mut produced = BTreeSet::new();
        for partition in 0..PARTITIONS {
            for _ in 0..PER_PARTITION {
                let key = format!("p{partition}");
                let record = FutureRecord::to(&self.topic)
                    .partition(partition)
                    .key(&key)
                    .payload("value");
                let delivered = self
                    .runtime
                    .block_on(self.producer.send(record, Duration::from_secs(30)))
                    .map_err(|(error, _)| error)?;
                produced.insert((delivered.partition, delivered.offset));
            }
        }
        Ok(produced)
    }

    fn member(&self, group: &str, session_ms: u32, instance: Option<&str>) -> Result<Member> {
        Member::start(self.addr(), group, &self.topic, session_ms, instance)
    }
}

fn union(members: &[&Member]) -> BTreeSet<i32> {
    members.iter().flat_map(|m| m.owned()).collect()
}

fn all_partitions() -> BTreeSet<i32> {
    (0..PARTITIONS).collect()
}

/// Waits until the members together consumed every record of `batch`.
fn consumed(members: &[&Member], batch: &BTreeSet<(i32, i64)>) -> Result<()> {
    wait_for("every record of the batch consumed and committed", || {
        let seen: BTreeSet<(i32, i64)> = members.iter().flat_map(|m| m.committed()).collect();
        batch.is_subset(&seen)
    })
}

/// Runs the admin client process: (listed groups, described groups).
fn admin_view(broker: &str, group: &str) -> Result<(Vec<Value>, Value)> {
    let output = Command::new(python()?)
        .arg(client_script())
        .args(["groups", broker, group])
        .stderr(Stdio::inherit())
        .output()?;
    ensure!(
        output.status.success(),
        "admin client failed: {}",
        output.status
    );
    let events: Vec<Value> = String::from_utf8(output.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let listed = events
        .iter()
        .find(|e| e["event"] == "listed")
        .context("no list")?;
    let described = events
        .iter()
        .find(|e| e["event"] == "described")
        .context("no describe")?;
    Ok((
        listed["groups"].as_array().cloned().unwrap_or_default(),
        described.clone(),
    ))
}

#[test]
fn a_killed_dynamic_member_is_replaced_and_consumption_goes_on_from_committed_offsets() -> Result<()>
{
    let mut fixture = Fixture::start()?;
    let group = random_name("dynamic");
    let first = fixture.produce_batch()?;
    let survivor = fixture.member(&group, DYNAMIC_SESSION_MS, None)?;
    let mut victim = fixture.member(&group, DYNAMIC_SESSION_MS, None)?;
    wait_for("two members sharing all six partitions", || {
        let (a, b) = (survivor.owned(), victim.owned());
        !a.is_empty()
            && !b.is_empty()
            && a.is_disjoint(&b)
            && union(&[&survivor, &victim]) == all_partitions()
    })?;
    consumed(&[&survivor, &victim], &first)?;
    let taken_over = victim.owned();
    let committed_by_victim: BTreeMap<i32, i64> =
        victim
            .committed()
            .into_iter()
            .fold(BTreeMap::new(), |mut last, (p, o)| {
                let entry = last.entry(p).or_insert(o);
                *entry = (*entry).max(o);
                last
            });

    victim.kill();
    let before_kill = survivor.events().len();
    let second = fixture.produce_batch()?;
    wait_for("the survivor owning all six partitions", || {
        survivor.owned() == all_partitions()
    })?;
    consumed(&[&survivor], &second)?;
    // It went on from the victim's committed offsets: none of the records the victim
    // committed was consumed again after the takeover.
    let after_kill: Vec<(i32, i64)> = survivor.events()[before_kill..]
        .iter()
        .filter(|e| e["event"] == "record")
        .map(|e| (num(&e["partition"]) as i32, num(&e["offset"])))
        .collect();
    for (partition, offset) in after_kill {
        if let Some(last) = committed_by_victim.get(&partition) {
            ensure!(
                !taken_over.contains(&partition) || offset > *last,
                "partition {partition} offset {offset} consumed again (victim committed {last})"
            );
        }
    }

    let third = fixture.member(&group, DYNAMIC_SESSION_MS, None)?;
    wait_for("the third member getting its share", || {
        let (a, c) = (survivor.owned(), third.owned());
        !c.is_empty() && a.is_disjoint(&c) && union(&[&survivor, &third]) == all_partitions()
    })?;
    let last = fixture.produce_batch()?;
    consumed(&[&survivor, &third], &last)?;

    // confluent-kafka's admin client sees the group and its two members.
    let (listed, described) = admin_view(fixture.addr(), &group)?;
    ensure!(
        listed
            .iter()
            .any(|g| g["id"] == group.as_str() && g["state"] == "STABLE"),
        "list_consumer_groups: {listed:?}"
    );
    ensure!(described["state"] == "STABLE", "describe: {described}");
    let members = described["members"].as_array().context("members")?;
    ensure!(
        members.len() == 2,
        "describe shows the two live members: {described}"
    );
    let described_partitions: BTreeSet<i32> = members.iter().flat_map(partitions).collect();
    ensure!(
        described_partitions == all_partitions(),
        "describe assignments: {described}"
    );
    ensure!(
        members.iter().all(|m| m["client_id"] == "dynamic-member"
            && m["host"].as_str().is_some_and(|h| h.contains("127.0.0.1"))),
        "describe client ids and hosts: {described}"
    );
    Ok(())
}

#[test]
fn static_members_keep_their_place_across_a_restart_and_expire_when_gone() -> Result<()> {
    let mut fixture = Fixture::start()?;
    let group = random_name("static");
    let stays = fixture.member(&group, STATIC_SESSION_MS, Some("stays"))?;
    let mut restarts = fixture.member(&group, STATIC_SESSION_MS, Some("restarts"))?;
    wait_for("two static members sharing all six partitions", || {
        let (a, b) = (stays.owned(), restarts.owned());
        !a.is_empty() && !b.is_empty() && union(&[&stays, &restarts]) == all_partitions()
    })?;
    let first = fixture.produce_batch()?;
    consumed(&[&stays, &restarts], &first)?;
    let (kept, held) = (stays.owned(), restarts.owned());
    let (assigned_before, revoked_before) = (stays.count("assigned"), stays.count("revoked"));

    // Restarted in time: same instance id, same partitions, nobody rebalances.
    restarts.kill();
    let restarted = fixture.member(&group, STATIC_SESSION_MS, Some("restarts"))?;
    wait_for("the restarted member getting its partitions back", || {
        restarted.owned() == held
    })?;
    let second = fixture.produce_batch()?;
    consumed(&[&stays, &restarted], &second)?;
    ensure!(
        stays.owned() == kept
            && stays.count("assigned") == assigned_before
            && stays.count("revoked") == revoked_before,
        "the other member was rebalanced: {:?}",
        stays
            .events()
            .iter()
            .filter(|e| e["event"] != "record" && e["event"] != "committed")
            .collect::<Vec<_>>()
    );
    let (_, described) = admin_view(fixture.addr(), &group)?;
    let instances: BTreeSet<String> = described["members"]
        .as_array()
        .context("members")?
        .iter()
        .filter_map(|m| m["instance_id"].as_str().map(str::to_owned))
        .collect();
    ensure!(
        instances == BTreeSet::from(["stays".to_owned(), "restarts".to_owned()]),
        "describe shows both static members: {described}"
    );

    // Killed and never restarted: expired after its session timeout, partitions taken over.
    let mut restarted = restarted;
    restarted.kill();
    wait_for(
        "the remaining static member owning all six partitions",
        || stays.owned() == all_partitions(),
    )?;
    let third = fixture.produce_batch()?;
    consumed(&[&stays], &third)?;
    Ok(())
}
