//! The shared `Storage` contract (`store/tests/shared/contract.rs`, run on sled there)
//! on a real etcd per test.

#[path = "../../store/tests/common/mod.rs"]
mod common;
#[macro_use]
#[path = "../../store/tests/shared/contract.rs"]
mod contract;
mod support;

use support::EtcdFixture;

contract_tests!(EtcdFixture::new().await);
