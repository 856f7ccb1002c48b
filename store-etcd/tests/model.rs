//! The model-based property test (`store/tests/shared/model.rs`, run on sled there) on
//! a real etcd: one etcd for the whole run, each case under a prefix of its own;
//! "reopen" connects a new store.

#[path = "../../store/tests/common/mod.rs"]
mod common;
#[path = "../../store/tests/shared/model.rs"]
mod model;
mod support;

use std::sync::atomic::{AtomicU64, Ordering};

use corral_store_etcd::Options;
use proptest::test_runner::{Config, TestRunner};
use support::{Etcd, EtcdFixture};

#[test]
fn store_agrees_with_model_on_etcd() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // Started and stopped here, not in a static: the process must not outlive the test.
    let etcd = rt.block_on(Etcd::start());
    let case = AtomicU64::new(0);
    let config = Config { cases: 48, source_file: Some(file!()), ..Config::default() };
    let mut runner = TestRunner::new(config);
    let strategy = proptest::collection::vec(model::op(), 1..40);
    let result = runner.run(&strategy, |ops| {
        let prefix = format!("/model-{}/", case.fetch_add(1, Ordering::Relaxed));
        rt.block_on(async {
            let f = EtcdFixture::on(&etcd, Options { prefix, ..Options::default() }).await;
            model::run(f, ops).await;
        });
        Ok(())
    });
    drop(etcd);
    if let Err(e) = result {
        panic!("{e}");
    }
}
