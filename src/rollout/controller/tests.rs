//! The controller on its own (no fleet store): the plan, rollbacks and a
//! failing disk.

use super::*;
use crate::rollout::state::Phase;

fn controller(extra: &str) -> (Controller, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "backends: {{ old: {{ url: 'http://127.0.0.1:1' }}, new: {{ url: 'http://127.0.0.1:2' }} }}\nrollout: {{ state_file: '{}', steps: [1, 5, 25, 50, 100] }}\n{extra}",
        dir.path().join("s.json").display()
    );
    let cfg = Arc::new(Config::from_yaml(&yaml, "t").unwrap());
    let m = Metrics::new();
    let snap = Snapshot::build(cfg, RolloutState::initial(0.0), 0, &m).unwrap();
    let slot = persist::RollbackSlot::prepare(&dir.path().join("s.json")).unwrap();
    (
        Controller::new(Arc::new(crate::snapshot::Published::new(snap)), m, Some(slot)),
        dir,
    )
}

fn sre() -> Actor {
    Actor::new("sre", "test")
}

#[test]
fn steps_walk_the_plan_to_promoted() {
    let (c, _d) = controller("");
    let mut seen = Vec::new();
    loop {
        match c.step(&sre()) {
            Ok(s) => seen.push((s.percent, s.phase)),
            Err(ControlError::Conflict(m)) => {
                assert!(m.contains("last step"));
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        seen,
        vec![
            (1.0, Phase::Progressing),
            (5.0, Phase::Progressing),
            (25.0, Phase::Progressing),
            (50.0, Phase::Progressing),
            (100.0, Phase::Promoted)
        ]
    );
}

#[test]
fn rollback_records_and_persists() {
    let (c, d) = controller("");
    c.set_percent(25.0, &sre()).unwrap();
    let s = c
        .rollback(&Actor::new("pager", "5xx spike"), RollbackReason::Manual)
        .unwrap();
    assert_eq!((s.percent, s.phase), (0.0, Phase::RolledBack));
    let change = s.last_change.unwrap();
    assert_eq!(
        (change.who.as_str(), change.why.as_str(), change.from_percent),
        ("pager", "5xx spike", 25.0)
    );
    let saved = persist::load(&d.path().join("s.json")).unwrap().unwrap();
    assert_eq!(saved.state.phase, Phase::RolledBack);
    assert_eq!(c.metrics.rollout.rollbacks.with_label_values(&["manual"]).get(), 1);
    // After a rollback, step starts again from the first step.
    assert_eq!(c.step(&sre()).unwrap().percent, 1.0);
}

#[test]
fn a_rollback_while_rolled_back_changes_and_counts_nothing() {
    let (c, _d) = controller("");
    c.set_percent(25.0, &sre()).unwrap();
    c.rollback(&Actor::new("guard", "diff_rate failed"), RollbackReason::Guard)
        .unwrap();
    let again = c
        .rollback(&Actor::new("pager", "to be sure"), RollbackReason::Manual)
        .unwrap();
    let change = again.last_change.unwrap();
    assert_eq!(
        (change.who.as_str(), change.why.as_str()),
        ("guard", "diff_rate failed"),
        "the reason stays"
    );
    assert_eq!(change.from_percent, 25.0, "no 0% → 0% change");
    assert_eq!(c.metrics.rollout.rollbacks.with_label_values(&["manual"]).get(), 0);
    assert_eq!(c.history().len(), 2);
}

#[test]
fn bad_percent_changes_nothing() {
    let (c, _d) = controller("");
    c.set_percent(5.0, &sre()).unwrap();
    let before = c.state();
    for bad in [-1.0, 100.5, f64::NAN, f64::INFINITY] {
        assert!(matches!(c.set_percent(bad, &sre()), Err(ControlError::Invalid(_))));
    }
    assert_eq!(c.state(), before);
}

#[test]
fn a_pause_step_holds_the_plan_until_resumed() {
    let (c, _d) = controller("");
    let cfg = crate::config::Config::from_yaml(
        &format!(
            "backends: {{ old: {{ url: 'http://127.0.0.1:1' }}, new: {{ url: 'http://127.0.0.1:2' }} }}\nrollout: {{ state_file: '{}', steps: [1, {{ percent: 25, pause: true }}, 100] }}\n",
            _d.path().join("s.json").display()
        ),
        "t",
    )
    .unwrap();
    c.reload(cfg).unwrap();
    assert_eq!(c.step(&sre()).unwrap().phase, Phase::Progressing);
    let held = c.step(&sre()).unwrap();
    assert_eq!(
        (held.percent, held.phase),
        (25.0, Phase::Paused),
        "the plan waits for a person"
    );
    assert_eq!(c.resume(&sre()).unwrap().phase, Phase::Progressing);
    assert_eq!(c.step(&sre()).unwrap().phase, Phase::Promoted);
}

#[test]
fn pause_and_resume() {
    let (c, _d) = controller("");
    c.step(&sre()).unwrap();
    assert_eq!(c.pause(&sre()).unwrap().phase, Phase::Paused);
    assert!(matches!(c.pause(&sre()), Err(ControlError::Conflict(_))));
    // A manual percent keeps the plan paused.
    assert_eq!(c.set_percent(10.0, &sre()).unwrap().phase, Phase::Paused);
    assert_eq!(c.resume(&sre()).unwrap().phase, Phase::Progressing);
    assert!(matches!(c.resume(&sre()), Err(ControlError::Conflict(_))));
    assert_eq!(c.promote(&sre()).unwrap().phase, Phase::Promoted);
}

#[test]
fn failed_persist_leaves_state_unchanged_except_for_rollback() {
    let (c, d) = controller("");
    c.set_percent(5.0, &sre()).unwrap();
    // Make the state directory unwritable by replacing it with a file.
    let blocker = d
        .path()
        .join("s.json.tmp.".to_string() + &std::process::id().to_string());
    std::fs::create_dir_all(&blocker).unwrap();
    assert!(matches!(c.set_percent(50.0, &sre()), Err(ControlError::Persist(_))));
    assert_eq!(c.state().percent, 5.0);
    assert!(c.persisted(), "a refused change leaves the saved state true");
    let rolled = c.rollback(&sre(), RollbackReason::Manual).unwrap();
    assert_eq!(
        rolled.phase,
        Phase::RolledBack,
        "traffic leaves new even when the disk fails"
    );
    assert!(!c.persisted());
    assert_eq!(c.metrics.upkeep.state_persist_failures.get(), 2);
    // The slot holds it, so a restart stays rolled back.
    let loaded = persist::load(&d.path().join("s.json")).unwrap().unwrap();
    assert!(loaded.from_slot);
    assert_eq!(loaded.state.phase, Phase::RolledBack);
    std::fs::remove_dir(&blocker).unwrap();
    c.step(&sre()).unwrap();
    assert!(c.persisted(), "the next saved change is persisted again");
}

/// A controller on a fleet store nobody answers at (the store is never
/// called by what these tests do).
fn shared_controller() -> (Controller, tempfile::TempDir) {
    let (c, d) = controller("");
    let cfg: crate::config::EtcdConfig =
        serde_yaml::from_str("{ endpoints: ['http://127.0.0.1:1'], prefix: /t }").unwrap();
    let store = crate::rollout::fleet::store::RolloutStore {
        etcd: crate::rollout::fleet::etcd::Etcd::new(&cfg).unwrap(),
        prefix: "/t".into(),
    };
    (c.with_store(store, 10), d)
}

#[tokio::test]
async fn states_from_the_store_apply_in_epoch_order_and_never_undo_an_unlanded_rollback() {
    let (c, d) = shared_controller();
    let mut raised = c.state();
    raised.percent = 25.0;
    raised.phase = Phase::Progressing;
    assert!(c.apply_remote(raised.clone(), 11));
    assert_eq!(c.state().percent, 25.0);
    // The registration hears of it, whoever applied it (the watch, or a
    // transaction made here that the watch then skips).
    tokio::time::timeout(std::time::Duration::from_secs(5), c.epoch_applied())
        .await
        .expect("an applied epoch wakes the registration");
    assert!(
        !c.apply_remote(RolloutState::initial(5.0), 11),
        "an epoch already applied"
    );
    assert!(!c.apply_remote(RolloutState::initial(5.0), 9), "an older epoch");

    c.rollback(&sre(), RollbackReason::Manual).unwrap();
    assert_eq!(c.state().phase, Phase::RolledBack, "in force here at once");
    assert!(c.pending_rollback().is_some());
    assert!(persist::unlanded_path(&d.path().join("s.json")).exists());
    // A raise that reached the store meanwhile does not undo it here…
    let mut later = raised.clone();
    later.percent = 50.0;
    assert!(!c.apply_remote(later, 12));
    assert_eq!(c.state().phase, Phase::RolledBack);
    // …nothing else changes until it lands…
    assert!(matches!(
        c.change(Op::SetPercent(75.0), &sre()).await,
        Err(ControlError::Unavailable(_))
    ));
    // …and once it has, the store's state is this instance's again.
    let landed = c.state();
    c.rollback_landed(landed, 13);
    assert!(c.pending_rollback().is_none());
    assert_eq!(c.epoch(), 13);
    assert!(!persist::unlanded_path(&d.path().join("s.json")).exists());
    assert!(c.apply_remote(raised, 14));
    assert_eq!(c.state().percent, 25.0);
}

#[tokio::test]
async fn a_change_expecting_another_epoch_is_refused_with_the_current_state() {
    let (c, _d) = shared_controller();
    match c.change_if(Op::SetPercent(5.0), &sre(), Some(7), None).await {
        Err(ControlError::Lost {
            current,
            epoch,
            message,
        }) => {
            assert_eq!((epoch, current.percent), (10, 0.0));
            assert!(message.contains("epoch 10, not 7"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.state().percent, 0.0);
}
