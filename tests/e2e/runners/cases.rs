//! The cases of the runner contract, each a function of the [`Bed`] it
//! runs in.

use std::time::{Duration, Instant};

use rollout::backend::BackendError;
use rollout::fleet::Adoption;
use rollout::model::{InstanceState, Verdict};

use super::SERVICE;
use super::harness::{Bed, Noting, get, ids, until, until_in};

/// Start: each instance of a batch runs with its own port and the
/// environment the fleet gives it, and is recorded.
pub(super) async fn start(bed: Bed) {
    let fleet = bed.fleet(bed.runner());
    fleet.register(bed.launch("r1", &["VERSION=c1"]));
    let started = fleet.start("r1", 3).await.expect("three instances start");
    let ids = ids(&started);
    assert_eq!(ids, ["web-r1-1", "web-r1-2", "web-r1-3"]);
    let mut ports: Vec<u16> = bed
        .store
        .instances(SERVICE)
        .expect("the records")
        .iter()
        .map(|r| r.port)
        .collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 3, "one port each: {ports:?}");
    for id in &ids {
        until_in(&fleet, id, InstanceState::Ready).await;
    }
    assert_eq!(bed.units(), ids, "what runs is what was started");
    for instance in fleet.list() {
        let addr = instance.address.expect("an address");
        let port: u16 = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap();
        assert!(ports.contains(&port), "{addr} is not on a recorded port");
        // demo-app answers `VERSION ROLLOUT_INSTANCE` on `$PORT`.
        assert_eq!(get(&addr, "/").await, format!("c1 {}\n", instance.id));
    }
    fleet.stop(&ids).await.expect("they stop");
    bed.assert_nothing_left(&fleet);
}

/// Exit: an instance that ends on its own is failed, with its exit status.
pub(super) async fn exit(bed: Bed) {
    let fleet = bed.fleet(bed.runner());
    fleet.register(bed.launch("r1", &["EXIT_AFTER_MS=300"]));
    let id = fleet.start("r1", 1).await.expect("it starts").remove(0).id;
    until_in(&fleet, &id, InstanceState::Failed).await;
    let probe = fleet.probe(&id).await.expect("a probe");
    let Verdict::Unhealthy(why) = probe.verdict else {
        panic!("a failed instance probed {probe:?}");
    };
    assert!(why.starts_with("exited (exit status: 1)"), "{why}");
    // Its last words are in its log, as it wrote them.
    until("its last line in its log", || {
        let lines = fleet.logs(&id, 1).ok()?;
        (lines == ["[ERROR] exiting (EXIT_AFTER_MS)"]).then_some(())
    })
    .await;
    fleet
        .stop(&[id])
        .await
        .expect("a failed instance is removed");
    bed.assert_nothing_left(&fleet);
}

/// Stop: the front door drains the instance (a request in flight is
/// answered), then it is asked to stop (SIGTERM) and ends, unforced; it
/// is removed and forgotten.
pub(super) async fn stop(bed: Bed) {
    let noted = Noting::new(bed.runner());
    let fleet = bed.fleet(noted.clone());
    let door = bed.front_door();
    fleet.attach(door.0.clone());
    let env = ["VERSION=c1", "LATENCY_MS=700", "LOG_REQUESTS=1"];
    let mut launch = bed.launch("r1", &env);
    // Longer than Swarm takes to stop a task on another node: the stop
    // must end on SIGTERM alone.
    launch.stop_grace_ms = 10_000;
    fleet.register(launch);
    let id = fleet.start("r1", 1).await.expect("it starts").remove(0).id;
    until_in(&fleet, &id, InstanceState::Ready).await;
    let addr = door.0.local_addr().to_string();
    let request = tokio::spawn(async move { get(&addr, "/").await });
    until("the request at the instance", || {
        let lines = fleet.logs(&id, 5).ok()?;
        lines
            .iter()
            .any(|l| l.contains("request for /"))
            .then_some(())
    })
    .await;
    fleet
        .stop(std::slice::from_ref(&id))
        .await
        .expect("it stops");
    let answer = request.await.expect("the request");
    assert_eq!(
        answer,
        format!("c1 {id}\n"),
        "the request in flight was cut"
    );
    assert_eq!(noted.calls(), ["terminate", "removed, ended"]);
    bed.assert_nothing_left(&fleet);
}

/// Stop, forced: an instance deaf to SIGTERM is killed after the grace
/// period.
pub(super) async fn stop_forces(bed: Bed) {
    let noted = Noting::new(bed.runner());
    let fleet = bed.fleet(noted.clone());
    let mut deaf = bed.launch("r1", &["IGNORE_SIGTERM=1"]);
    deaf.stop_grace_ms = 500;
    fleet.register(deaf);
    let id = fleet.start("r1", 1).await.expect("it starts").remove(0).id;
    until_in(&fleet, &id, InstanceState::Ready).await;
    let asked = Instant::now();
    fleet.stop(&[id]).await.expect("it stops");
    assert!(asked.elapsed() >= Duration::from_millis(500), "no grace");
    assert_eq!(noted.calls(), ["terminate", "kill", "removed, ended"]);
    bed.assert_nothing_left(&fleet);
}

/// Adopt: a new runner (as after an agent restart) takes back the recorded
/// instances that still run, forgets the one that ended, starts nothing
/// twice, and new instances' numbers follow the adopted ones.
pub(super) async fn adopt(bed: Bed) {
    let first = bed.fleet(bed.runner());
    let (good, bad) = (
        bed.launch("r1", &["VERSION=c1"]),
        bed.launch("r2", &["EXIT_AFTER_MS=100"]),
    );
    first.register(good.clone());
    first.register(bad.clone());
    let kept = ids(&first.start("r1", 2).await.expect("two start"));
    let ended = first.start("r2", 1).await.expect("one starts").remove(0).id;
    for id in &kept {
        until_in(&first, id, InstanceState::Ready).await;
    }
    until_in(&first, &ended, InstanceState::Failed).await;
    drop(first);

    let again = bed.fleet(bed.runner());
    again.register(good);
    again.register(bad);
    let mut found = again.adopt().await.expect("adoption");
    found.adopted.sort();
    assert_eq!(
        found,
        Adoption {
            adopted: kept.clone(),
            gone: vec![ended],
            swept: Vec::new(),
        }
    );
    assert_eq!(
        bed.units(),
        kept,
        "nothing started twice, nothing ended left"
    );
    for id in &kept {
        until_in(&again, id, InstanceState::Ready).await;
        let addr = again.list().into_iter().find(|i| &i.id == id).unwrap();
        assert_eq!(get(&addr.address.unwrap(), "/").await, format!("c1 {id}\n"));
    }
    let next = again.start("r1", 1).await.expect("one more").remove(0).id;
    assert_eq!(next, "web-r1-4", "numbers follow the adopted ones");
    let all = ids(&again.list());
    again.stop(&all).await.expect("they stop");
    bed.assert_nothing_left(&again);
}

/// Adopt, unready: an instance recorded but not ready yet when its agent
/// restarts (on Swarm, its task maybe not even running) is taken back and
/// becomes ready, not forgotten.
pub(super) async fn adopt_unready(bed: Bed) {
    let first = bed.fleet(bed.runner());
    let slow = bed.launch("r1", &["VERSION=c1", "READY_AFTER_MS=1000"]);
    first.register(slow.clone());
    let id = first.start("r1", 1).await.expect("it starts").remove(0).id;
    drop(first);

    let again = bed.fleet(bed.runner());
    again.register(slow);
    let found = again.adopt().await.expect("adoption");
    let adopted = vec![id.clone()];
    assert_eq!(
        found,
        Adoption {
            adopted,
            ..Adoption::default()
        }
    );
    until_in(&again, &id, InstanceState::Ready).await;
    assert_eq!(bed.units(), std::slice::from_ref(&id));
    again.stop(&[id]).await.expect("it stops");
    bed.assert_nothing_left(&again);
}

/// Sweep: an instance of ours nobody recorded (its agent died before it
/// could) is removed by the next agent; another agent's is left alone.
pub(super) async fn sweep(bed: Bed) {
    let first = bed.fleet(bed.runner());
    let launch = bed.launch("r1", &[]);
    first.register(launch.clone());
    let recorded = first.start("r1", 1).await.expect("it starts").remove(0).id;
    until_in(&first, &recorded, InstanceState::Ready).await;
    let stray = bed.stray(bed.runner().as_ref(), &launch, "web-r1-99").await;
    let other = Bed::new(bed.subject, bed.program.clone());
    let theirs = other.launch("r1", &[]);
    let theirs = other
        .stray(other.runner().as_ref(), &theirs, "web-r1-98")
        .await;
    for (bed, id) in [(&bed, "web-r1-99"), (&other, "web-r1-98")] {
        let running = || bed.units().contains(&id.to_string()).then_some(());
        until(&format!("{id} running"), running).await;
    }
    drop(first);

    let again = bed.fleet(bed.runner());
    again.register(launch);
    let found = again.adopt().await.expect("adoption");
    assert_eq!(
        found,
        Adoption {
            adopted: vec![recorded.clone()],
            gone: Vec::new(),
            swept: vec!["web-r1-99".into()],
        }
    );
    until("the stray removed", || {
        (bed.units() == std::slice::from_ref(&recorded)).then_some(())
    })
    .await;
    assert_eq!(other.units(), ["web-r1-98"], "another agent's was touched");
    for run in [stray, theirs] {
        run.kill().await;
        run.remove().await;
    }
    again.stop(&[recorded]).await.expect("it stops");
    bed.assert_nothing_left(&again);
}

/// Logs: the lines an instance wrote, in order, as it wrote them, the last
/// `n` of them; still there once it stopped.
pub(super) async fn logs(bed: Bed) {
    let fleet = bed.fleet(bed.runner());
    fleet.register(bed.launch("r1", &["VERSION=c1", "LOG_REQUESTS=1"]));
    let instance = fleet.start("r1", 1).await.expect("it starts").remove(0);
    let id = instance.id;
    until_in(&fleet, &id, InstanceState::Ready).await;
    let addr = instance.address.expect("an address");
    for _ in 0..2 {
        get(&addr, "/").await;
    }
    let port = addr.rsplit(':').next().unwrap_or_default();
    let request = "[INFO] request for / (LOG_REQUESTS), answered in 0 ms";
    let lines = until("three lines", || {
        let lines = fleet.logs(&id, 10).ok()?;
        (lines.len() >= 3).then_some(lines)
    })
    .await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    let listening = format!(":{port} (instance {id})");
    assert!(
        lines[0].starts_with("[INFO] demo-app c1 listening on ") && lines[0].ends_with(&listening),
        "{lines:?}"
    );
    assert_eq!(lines[1..], [request, request]);
    assert_eq!(fleet.logs(&id, 1).unwrap(), [request]);
    fleet
        .stop(std::slice::from_ref(&id))
        .await
        .expect("it stops");
    bed.assert_nothing_left(&fleet);
    assert_eq!(fleet.logs(&id, 10).unwrap(), lines, "kept after the stop");
    assert!(matches!(
        fleet.logs("web-r1-9", 1),
        Err(BackendError::UnknownInstance(_))
    ));
}
