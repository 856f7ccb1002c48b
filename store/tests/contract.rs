//! The shared `Storage` contract (`shared/contract.rs`) on a real sled store in a
//! temp dir; the same suite runs on etcd in `corral-store-etcd`.

mod common;
#[macro_use]
#[path = "shared/contract.rs"]
mod contract;

use common::SledFixture;

contract_tests!(SledFixture::new());
