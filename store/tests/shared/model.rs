//! Model-based property test, backend-independent: random operations, including
//! close and reopen, against a store and a `BTreeMap` model. After every step the
//! store must agree with the model; at the end, replaying the retained event log must
//! rebuild the final state. Run on sled by `model.rs`, on etcd by
//! `corral-store-etcd`'s `model.rs`.

use std::collections::BTreeMap;

use corral_api::Selector;
use corral_store::{DeleteOutcome, Error, Storage, UpdateOutcome, WatchEvent, WatchRequest};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::common::*;

#[derive(Debug, Clone)]
pub enum Op {
    Create(u8),
    Update {
        name: u8,
        data: u8,
        stale: bool,
    },
    Status {
        name: u8,
        phase: u8,
    },
    Delete(u8),
    SetFinalizer {
        name: u8,
        on: bool,
    },
    /// Compact the log up to `back` revisions before the current one.
    Compact {
        back: u8,
    },
    Reopen,
}

pub fn op() -> impl Strategy<Value = Op> {
    let name = 0u8..4;
    prop_oneof![
        3 => name.clone().prop_map(Op::Create),
        4 => (name.clone(), 0u8..3, any::<bool>()).prop_map(|(name, data, stale)| Op::Update { name, data, stale }),
        2 => (name.clone(), 0u8..2).prop_map(|(name, phase)| Op::Status { name, phase }),
        2 => name.clone().prop_map(Op::Delete),
        2 => (name, any::<bool>()).prop_map(|(name, on)| Op::SetFinalizer { name, on }),
        1 => (0u8..4).prop_map(|back| Op::Compact { back }),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct M {
    data: String,
    phase: Option<String>,
    generation: i64,
    rv: u64,
    finalizer: bool,
    deleting: bool,
}

#[derive(Default)]
struct Model {
    objects: BTreeMap<String, M>,
    rev: u64,
}

fn body(name: &str, data: &str, finalizer: bool) -> Value {
    let mut v = cm(name, data);
    if finalizer {
        v["metadata"]["finalizers"] = json!(["corral.dev/model"]);
    }
    v
}

/// What the model says a step should have done: Ok(true) = wrote, Ok(false) = no-op.
type Expect = Result<bool, &'static str>;

async fn step(store: &dyn Storage, model: &mut Model, op: &Op) -> (Expect, Result<bool, String>) {
    let n = |i: &u8| format!("o{i}");
    match op {
        Op::Create(i) => {
            let name = n(i);
            let expect = if model.objects.contains_key(&name) {
                Err("exists")
            } else {
                model.rev += 1;
                model.objects.insert(
                    name.clone(),
                    M {
                        data: "init".into(),
                        phase: None,
                        generation: 1,
                        rv: model.rev,
                        finalizer: false,
                        deleting: false,
                    },
                );
                Ok(true)
            };
            let got = match store.create(key(&name), body(&name, "init", false)).await {
                Ok(_) => Ok(true),
                Err(Error::AlreadyExists(_)) => Err("exists".into()),
                Err(e) => Err(e.to_string()),
            };
            (expect, got)
        }
        Op::Update { name: i, data, stale } => {
            let name = n(i);
            let data = format!("d{data}");
            let Some(m) = model.objects.get(&name).cloned() else {
                let got = store.update(key(&name), body(&name, &data, false), None).await;
                return (Err("missing"), map_update(got));
            };
            let expected = if *stale { m.rv + 1000 } else { m.rv };
            let got = map_update(store.update(key(&name), body(&name, &data, m.finalizer), Some(expected)).await);
            let expect = if *stale {
                Err("conflict")
            } else if m.data == data {
                Ok(false)
            } else {
                model.rev += 1;
                let e = model.objects.get_mut(&name).expect("present");
                e.data = data;
                e.generation += 1;
                e.rv = model.rev;
                Ok(true)
            };
            (expect, got)
        }
        Op::Status { name: i, phase } => {
            let name = n(i);
            let phase = format!("p{phase}");
            let mut b = cm(&name, "ignored");
            b["status"] = json!({"phase": phase});
            let got = map_update(store.update_status(key(&name), b, None).await);
            let expect = match model.objects.get_mut(&name) {
                None => Err("missing"),
                Some(m) if m.phase.as_deref() == Some(phase.as_str()) => Ok(false),
                Some(m) => {
                    model.rev += 1;
                    m.phase = Some(phase);
                    m.rv = model.rev;
                    Ok(true)
                }
            };
            (expect, got)
        }
        Op::Delete(i) => {
            let name = n(i);
            let before = store.stats().revision;
            let got = match store.delete(key(&name), None).await {
                Ok(DeleteOutcome::Deleted(_)) => Ok(true),
                Ok(DeleteOutcome::Finalizing(o)) => Ok(o.revision > before),
                Err(Error::NotFound(_)) => Err("missing".into()),
                Err(e) => Err(e.to_string()),
            };
            let expect = match model.objects.get_mut(&name) {
                None => Err("missing"),
                Some(m) if m.finalizer && m.deleting => Ok(false),
                Some(m) if m.finalizer => {
                    model.rev += 1;
                    m.deleting = true;
                    m.generation += 1;
                    m.rv = model.rev;
                    Ok(true)
                }
                Some(_) => {
                    model.rev += 1;
                    model.objects.remove(&name);
                    Ok(true)
                }
            };
            (expect, got)
        }
        Op::SetFinalizer { name: i, on } => {
            let name = n(i);
            let Some(m) = model.objects.get(&name).cloned() else {
                let got = store.update(key(&name), body(&name, "x", *on), None).await;
                return (Err("missing"), map_update(got));
            };
            let got = map_update(store.update(key(&name), body(&name, &m.data, *on), None).await);
            let expect = if m.finalizer == *on {
                Ok(false)
            } else {
                model.rev += 1;
                if !*on && m.deleting {
                    model.objects.remove(&name);
                } else {
                    let e = model.objects.get_mut(&name).expect("present");
                    e.finalizer = *on;
                    e.rv = model.rev;
                }
                Ok(true)
            };
            (expect, got)
        }
        Op::Compact { back } => {
            let target = model.rev.saturating_sub(u64::from(*back));
            let got = store.compact(target).await.map(|()| false).map_err(|e| e.to_string());
            (Ok(false), got)
        }
        Op::Reopen => (Ok(false), Ok(false)),
    }
}

fn map_update(r: corral_store::Result<UpdateOutcome>) -> Result<bool, String> {
    match r {
        Ok(UpdateOutcome::Updated(_)) | Ok(UpdateOutcome::Deleted(_)) => Ok(true),
        Ok(UpdateOutcome::Unchanged(_)) => Ok(false),
        Err(Error::NotFound(_)) => Err("missing".into()),
        Err(Error::Conflict { .. }) => Err("conflict".into()),
        Err(e) => Err(e.to_string()),
    }
}

async fn check_agrees(store: &dyn Storage, model: &Model) {
    assert_eq!(store.stats().revision, model.rev, "revision");
    let list = store.list(RES, None, &Selector::everything()).await.unwrap();
    assert_eq!(list.revision, model.rev);
    let got: BTreeMap<String, M> = list
        .items
        .iter()
        .map(|o| {
            let v = o.value().unwrap();
            let m = M {
                data: v["spec"]["data"]["v"].as_str().unwrap().to_string(),
                phase: v["status"]["phase"].as_str().map(str::to_string),
                generation: v["metadata"]["generation"].as_i64().unwrap(),
                rv: o.revision,
                finalizer: v["metadata"]["finalizers"].as_array().is_some_and(|a| !a.is_empty()),
                deleting: v["metadata"]["deletionTimestamp"].is_string(),
            };
            (o.key.name.clone(), m)
        })
        .collect();
    assert_eq!(got, model.objects);
    for (name, m) in &model.objects {
        let head = store.head(&key(name)).await.unwrap().expect("listed objects have a head");
        assert_eq!((head.revision, head.deleting), (m.rv, m.deleting), "head of {name}");
    }
}

/// Runs `ops` on the fixture's store and the model, checking after each; then checks
/// the retained log rebuilds the final state.
pub async fn run(mut f: impl Fixture, ops: Vec<Op>) {
    let base = f.store().stats().revision;
    let mut model = Model { rev: base, ..Model::default() };
    for op in &ops {
        if let Op::Reopen = op {
            f.reopen().await;
        } else {
            let (expect, got) = step(&*f.store(), &mut model, op).await;
            assert_eq!(got, expect.map_err(str::to_string), "op {op:?}");
        }
        check_agrees(&*f.store(), &model).await;
    }
    let store = f.store();
    // The log, replayed from its start, rebuilds exactly the final state; after a
    // compaction it holds every revision above the floor, once, in order.
    let floor = store.stats().compacted;
    if floor > base {
        let mut w = store.watch(WatchRequest { from: Some(floor), ..Default::default() }).await.unwrap();
        for expected in floor + 1..=model.rev {
            let WatchEvent::Event(e) = next(&mut w).await else { panic!("expected an event") };
            assert_eq!(e.revision, expected);
        }
        assert!(store.watch(WatchRequest { from: Some(floor - 1), ..Default::default() }).await.is_err());
    } else if model.rev > base {
        let mut w = store.watch(WatchRequest { from: Some(base), ..Default::default() }).await.unwrap();
        let mut rebuilt: BTreeMap<String, u64> = BTreeMap::new();
        for expected in base + 1..=model.rev {
            let WatchEvent::Event(e) = next(&mut w).await else { panic!("expected an event") };
            assert_eq!(e.revision, expected, "log has every revision once, in order");
            match e.event_type {
                corral_store::EventType::Deleted => {
                    rebuilt.remove(&e.object.key.name);
                }
                _ => {
                    rebuilt.insert(e.object.key.name.clone(), e.revision);
                }
            }
        }
        let want: BTreeMap<String, u64> = model.objects.iter().map(|(k, m)| (k.clone(), m.rv)).collect();
        assert_eq!(rebuilt, want);
    }
}
