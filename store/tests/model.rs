//! The model-based property test (`shared/model.rs`) on a real sled store in a temp
//! dir, with close and reopen.

mod common;
#[path = "shared/model.rs"]
mod model;

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn store_agrees_with_model(ops in proptest::collection::vec(model::op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(model::run(common::SledFixture::new(), ops));
    }
}
