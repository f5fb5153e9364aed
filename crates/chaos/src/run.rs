//! One chaos run: start the cluster (every role its own process, two instances of each
//! processor), run the load while the fault schedule plays, heal everything, let the
//! system settle, gather the facts and judge the history.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{atomic::AtomicBool, Arc},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use notesaga_testkit::{notesaga, run_captured, token, Cluster, ROLES, TEST_USER};

use crate::{
    load::{self, Op},
    observe,
    schedule::{schedule, Fault, FaultKind, PAUSE_POINT},
    verdict::{verdict, Anomaly, Facts, RawDuplicates},
};

/// The second instance of each processor (static membership under its own id).
const SECOND_INSTANCES: [(&str, &str); 4] = [
    ("notes", "notes-2"),
    ("embedding", "embedding-2"),
    ("narration", "narration-2"),
    ("orchestrator", "orchestrator-2"),
];

/// How long narration takes per call while it is slow, and while it hangs (past the
/// narration deadline below).
const SLOW_MS: &str = "3000";
const HANG_MS: &str = "45000";

/// Short saga deadlines and backoffs, so hangs and failures resolve within a run.
const SAGA_POLICY: [(&str, &str); 8] = [
    ("NOTESAGA_SAGA_EMBEDDING_DEADLINE_MS", "20000"),
    ("NOTESAGA_SAGA_NARRATION_DEADLINE_MS", "20000"),
    ("NOTESAGA_SAGA_NARRATION_DEADLINE_PER_KB_MS", "0"),
    ("NOTESAGA_SAGA_OTHER_DEADLINE_MS", "15000"),
    ("NOTESAGA_SAGA_BACKOFF_MS", "500"),
    ("NOTESAGA_SAGA_BACKOFF_MAX_MS", "5000"),
    ("NOTESAGA_NARRATION_PROVIDER", "silent"),
    // The hash embedder: every embedding instance would otherwise load the model, and
    // the faults under test are the provider's windows, not the model's speed.
    ("NOTESAGA_EMBEDDING_PROVIDER", "builtin"),
];

/// What a run was asked to do.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) seed: u64,
    pub(crate) duration: Duration,
    pub(crate) users: usize,
    /// How long the system may take to settle after the load.
    pub(crate) settle: Duration,
    /// The fault kinds the schedule draws from.
    pub(crate) faults: Vec<FaultKind>,
}

/// What a run found.
#[derive(Debug)]
pub(crate) struct Findings {
    pub(crate) plan: Plan,
    pub(crate) elapsed: Duration,
    pub(crate) history: Vec<Op>,
    pub(crate) faults: BTreeMap<FaultKind, usize>,
    pub(crate) anomalies: Vec<Anomaly>,
    pub(crate) raw: RawDuplicates,
    pub(crate) parked: usize,
    pub(crate) undecodable: usize,
}

/// Which role an instance runs.
fn role_of(instance: &str) -> &str {
    instance.split('-').next().unwrap_or(instance)
}

fn signal(name: &str, pid: Option<u32>) {
    if let Some(pid) = pid {
        let _ = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status();
    }
}

/// Carries out the schedule against the cluster, healing each fault after its hold.
struct Chaos {
    cluster: Cluster,
    faults_dir: PathBuf,
    /// Instances currently SIGSTOPped, and whether the broker is.
    paused: Vec<String>,
    /// What the harness itself saw go wrong (a broker that stopped answering).
    anomalies: Vec<Anomaly>,
    started: Instant,
}

impl Chaos {
    fn start_instance(&mut self, instance: &str) -> Result<()> {
        self.cluster.start_role_as(role_of(instance), instance)
    }

    async fn apply(&mut self, fault: &Fault) -> Result<()> {
        let target = fault.target.as_str();
        eprintln!(
            "chaos: +{:>5.1}s {} {} for {:.1}s",
            fault.at.as_secs_f64(),
            fault.kind,
            target,
            fault.hold.as_secs_f64()
        );
        match fault.kind {
            FaultKind::Kill => {
                self.cluster.kill_role(target);
                tokio::time::sleep(fault.hold).await;
                // Restarted with its id: static membership gives it its partitions back.
                self.start_instance(target)?;
            }
            FaultKind::Pause => {
                signal("STOP", self.cluster.role_pid(target));
                self.paused.push(target.to_owned());
                tokio::time::sleep(fault.hold).await;
                signal("CONT", self.cluster.role_pid(target));
                self.paused.retain(|p| p != target);
            }
            FaultKind::Restart => {
                let stopped = tokio::task::block_in_place(|| self.cluster.stop_role(target));
                if let Err(err) = stopped {
                    eprintln!("chaos: {target} did not stop cleanly: {err:#}");
                }
                self.start_instance(target)?;
            }
            FaultKind::BrokerKill => {
                self.cluster.broker_mut().kill();
                tokio::time::sleep(fault.hold).await;
                tokio::task::block_in_place(|| self.restart_broker(true))?;
            }
            FaultKind::BrokerPause => {
                let pid = self.cluster.broker_mut().pid();
                signal("STOP", pid);
                self.paused.push("broker".into());
                tokio::time::sleep(fault.hold).await;
                signal("CONT", pid);
                self.paused.retain(|p| p != "broker");
            }
            FaultKind::BrokerRestart => {
                tokio::task::block_in_place(|| self.restart_broker(false))?;
            }
            FaultKind::ProviderFail => {
                self.window(target, "always", fault.hold).await?;
            }
            FaultKind::ProviderSlow => self.window(PAUSE_POINT, SLOW_MS, fault.hold).await?,
            FaultKind::ProviderHang => self.window(PAUSE_POINT, HANG_MS, fault.hold).await?,
        }
        Ok(())
    }

    /// Restarts the broker; one that does not answer after its restart is an anomaly,
    /// and is restarted again (three tries in all).
    fn restart_broker(&mut self, kill: bool) -> Result<()> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.cluster.broker_mut().restart(kill || tries > 1) {
                Ok(()) => return Ok(()),
                Err(err) if tries < 3 => self.anomalies.push(Anomaly {
                    kind: "broker-unusable",
                    note: None,
                    detail: format!(
                        "the broker did not answer after a restart at +{:.0}s: {err:#}",
                        self.started.elapsed().as_secs_f64()
                    ),
                }),
                Err(err) => return Err(err),
            }
        }
    }

    /// A broker that listens but answers no metadata (its storage died) is an anomaly;
    /// it is restarted so the run goes on.
    fn probe_broker(&mut self) -> Result<()> {
        if self.paused.iter().any(|p| p == "broker") {
            return Ok(());
        }
        let addr = self.cluster.kafka_addr().to_owned();
        if notesaga_testkit::wait_for_metadata(&addr, Duration::from_secs(10)).is_ok() {
            return Ok(());
        }
        self.anomalies.push(Anomaly {
            kind: "broker-unusable",
            note: None,
            detail: format!(
                "the broker answered no metadata at +{:.0}s; restarted",
                self.started.elapsed().as_secs_f64()
            ),
        });
        eprintln!("chaos: the broker answers no metadata: restarting it");
        self.restart_broker(false)
    }

    async fn window(&self, point: &str, content: &str, hold: Duration) -> Result<()> {
        let path = self.faults_dir.join(point);
        std::fs::write(&path, content)?;
        tokio::time::sleep(hold).await;
        std::fs::remove_file(&path)?;
        Ok(())
    }

    /// Every process running and continued, every fault point cleared.
    fn heal(&mut self, instances: &[String]) -> Result<()> {
        for instance in instances {
            if self.cluster.role_pid(instance).is_none() {
                self.start_instance(instance)?;
            } else {
                signal("CONT", self.cluster.role_pid(instance));
            }
        }
        for paused in std::mem::take(&mut self.paused) {
            let pid = match paused.as_str() {
                "broker" => self.cluster.broker_mut().pid(),
                instance => self.cluster.role_pid(instance),
            };
            signal("CONT", pid);
        }
        signal("CONT", self.cluster.broker_mut().pid());
        if self.cluster.broker_mut().pid().is_none() {
            self.restart_broker(true)?;
        }
        for entry in std::fs::read_dir(&self.faults_dir)?.flatten() {
            std::fs::remove_file(entry.path())?;
        }
        self.probe_broker()
    }
}

/// Runs `plan` to its findings.
pub(crate) async fn run(plan: Plan) -> Result<Findings> {
    let started = Instant::now();
    // The roles log errors only (there will be many warnings), unless asked otherwise.
    if std::env::var_os("NOTESAGA_TEST_LOG").is_none() {
        std::env::set_var("NOTESAGA_TEST_LOG", "error");
    }
    let faults_dir = tempfile::tempdir()?;
    let faults_path = faults_dir.path().to_string_lossy().into_owned();
    let mut env: Vec<(&str, &str)> = SAGA_POLICY.to_vec();
    env.push(("NOTESAGA_FAULTS_DIR", faults_path.as_str()));
    eprintln!("chaos: starting the cluster (seed {})", plan.seed);
    let mut cluster = Cluster::start_configured(&[], &ROLES, &env).await?;
    for (role, instance) in SECOND_INSTANCES {
        cluster.start_role_as(role, instance)?;
    }
    let mut instances: Vec<String> = ROLES.iter().map(|r| (*r).to_owned()).collect();
    instances.extend(SECOND_INSTANCES.iter().map(|(_, i)| (*i).to_owned()));
    let targets: Vec<&str> = instances.iter().map(String::as_str).collect();
    let faults = schedule(plan.seed, plan.duration, &targets, &plan.faults);
    let base = cluster.http_url.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..plan.users)
        .map(|client| tokio::spawn(load::client(plan.seed, client, base.clone(), stop.clone())))
        .collect();
    let mut chaos = Chaos {
        cluster,
        faults_dir: faults_dir.path().to_owned(),
        paused: Vec::new(),
        anomalies: Vec::new(),
        started: Instant::now(),
    };
    let load_started = Instant::now();
    let mut counts: BTreeMap<FaultKind, usize> = BTreeMap::new();
    for fault in &faults {
        let due = load_started + fault.at;
        if due > load_started + plan.duration {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        tokio::task::block_in_place(|| chaos.probe_broker())?;
        chaos
            .apply(fault)
            .await
            .with_context(|| format!("{fault:?}"))?;
        *counts.entry(fault.kind).or_default() += 1;
    }
    tokio::time::sleep_until((load_started + plan.duration).into()).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut history = Vec::new();
    for client in clients {
        history.extend(client.await?);
    }
    eprintln!(
        "chaos: load done ({} requests, {} faults); healing and settling",
        history.len(),
        counts.values().sum::<usize>()
    );
    tokio::task::block_in_place(|| chaos.heal(&instances))?;

    let mut facts = Facts::default();
    let cluster = &chaos.cluster;
    let settle_started = Instant::now();
    observe::settle(cluster.data_dir(), plan.settle).await?;
    eprintln!(
        "chaos: settled in {:.0}s; checking",
        settle_started.elapsed().as_secs_f64()
    );
    // `notesaga check` waits until no saga is at work (briefly: settled), then checks
    // the stores.
    let (clean, report) = tokio::task::block_in_place(|| cluster.check(Duration::from_secs(30)))
        .context("notesaga check")?;
    if !clean {
        facts.check = Some(report);
    }
    let undecodable = observe::log_facts(cluster, &mut facts).await?;
    observe::read_notes(&base, &mut facts).await?;
    observe::sagas(cluster.data_dir(), &mut facts).await?;
    let before = observe::snapshot(cluster.data_dir()).await?;
    rebuild(&base)?;
    let after = observe::snapshot(cluster.data_dir()).await?;
    facts.rebuild = observe::differences(&before, &after);
    let (mut anomalies, raw) = verdict(&history, &facts);
    anomalies.extend(chaos.anomalies.iter().cloned());
    anomalies.sort();
    Ok(Findings {
        plan,
        elapsed: started.elapsed(),
        history,
        faults: counts,
        anomalies,
        raw,
        parked: facts.parked_sagas.len(),
        undecodable,
    })
}

/// Rebuilds every projection from the log (`notesaga replay --all`), swapped in.
fn rebuild(base: &str) -> Result<()> {
    let mut command = notesaga()?;
    command
        .args(["replay", "--all", "--api", base])
        .args(["--token", &token(TEST_USER, true)]);
    let (status, output) = run_captured(&mut command)?;
    anyhow::ensure!(status.success(), "notesaga replay --all failed: {output}");
    Ok(())
}
